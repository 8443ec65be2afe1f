//! `COPY` and `ADD`: what a step copies (sources globbed in the context, less what
//! `.dockerignore` excludes, or in another stage's image), where each file lands under
//! Docker's destination rules, a digest of it all for the cache key (names, modes, owners
//! and bytes; never mtimes), and the layer tar written from it.
//!
//! `ADD` does more, as BuildKit: a source that is a local tar archive, plain or compressed
//! (told by content, [`crate::archive`]), is unpacked into the destination directory, its
//! members keeping their modes, owners (unless `--chown`) and mtimes, and the archive's own
//! bytes join the digest; a `http(s)://` source is downloaded ([`crate::fetch`]) and copied
//! as a file (mode 0600 unless `--chmod`, never unpacked), its bytes in the digest.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_dockerfile::ignore::IgnoreRules;

use crate::filehash::FileHashes;
use berth_engine::Engine;
use berth_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::archive::{self, MemberKind, ReadAt};
use crate::fetch;

/// The build context: a directory, its `.dockerignore`, and the digests of its files
/// remembered from earlier builds.
pub(crate) struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
    hashes: Option<FileHashes>,
}

impl Context {
    pub(crate) fn new(root: PathBuf, ignore: IgnoreRules, hashes: Option<FileHashes>) -> Context {
        Context {
            root,
            ignore,
            hashes,
        }
    }

    /// The context directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `.dockerignore` excludes nothing (every file of the directory is in the
    /// context).
    pub(crate) fn ignores_nothing(&self) -> bool {
        self.ignore.is_empty()
    }
}

/// What one `COPY`/`ADD` asks for, expanded.
pub(crate) struct CopyRequest {
    pub(crate) sources: Vec<String>,
    pub(crate) heredocs: Vec<(String, String)>,
    pub(crate) dest: String,
    pub(crate) workdir: String,
    pub(crate) chown: Option<String>,
    pub(crate) chmod: Option<u32>,
    /// `--from`: the image whose filesystem the sources are in, and its name as written.
    pub(crate) from: Option<(Digest, String)>,
    /// `ADD`: local archives are unpacked into the destination, URLs downloaded.
    pub(crate) extract_archives: bool,
}

impl CopyRequest {
    /// The instruction as history and the cache key show it.
    /// (`--from` is left out, as BuildKit's history does; the cache key adds the image.)
    pub(crate) fn describe(&self) -> String {
        let mut words = Vec::new();
        if let Some(c) = &self.chown {
            words.push(format!("--chown={c}"));
        }
        if let Some(m) = self.chmod {
            words.push(format!("--chmod={m:o}"));
        }
        words.extend(self.sources.iter().cloned());
        words.extend(self.heredocs.iter().map(|(n, _)| format!("<<{n}")));
        words.push(self.dest.clone());
        words.join(" ")
    }
}

enum Content {
    Dir,
    /// A file found by walking a directory opened in the root.
    File(PathBuf),
    /// A source named directly, opened inside the root (its symlinks followed there).
    Open(std::fs::File),
    Symlink(PathBuf),
    Bytes(Vec<u8>),
    /// An archive member's bytes, at `offset` in the spool the archive was read into.
    Spooled {
        spool: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
    /// An archive member hard-linked to `target` (a path in the image) whose bytes, in the
    /// spool, it shares; a copy of them if `target` is no longer that member.
    Link {
        target: String,
        spool: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

struct Entry {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    content: Content,
}

/// What a `COPY` writes, by path in the image (no leading `/`).
pub(crate) struct Plan {
    /// The digest of everything that decides the layer's content.
    pub(crate) digest: String,
    entries: BTreeMap<String, Entry>,
    /// Keeps the roots and the directories opened in them (whose `/proc/self/fd` paths the
    /// entries name) open until the layer is written.
    _open: Vec<OwnedFd>,
}

/// A source of a `COPY`/`ADD`, matched.
enum Source {
    /// A path relative to the source root.
    Path(String),
    /// `ADD`'s `http(s)://` URL.
    Url(String),
}

/// A tree whose paths resolve inside it, symlinks followed but never out of it (with
/// `berth_store`'s `RESOLVE_IN_ROOT` helpers): the context, or an image's detached view.
struct Root {
    fd: OwnedFd,
}

/// A read-only view of `image`'s filesystem as a directory fd, its layers merged (`None`
/// when it has no layers): for `COPY --from`, the base's paths, and `-o`.
pub(crate) fn image_view(engine: &mut Engine, image: &Digest) -> Result<Option<OwnedFd>, String> {
    let store = engine.store();
    let record = store
        .resolve(&image.to_string())
        .map_err(|e| e.to_string())?;
    let chains = store
        .image(record)
        .and_then(|i| i.chain_ids())
        .map_err(|e| e.to_string())?;
    let lowers: Vec<PathBuf> = chains.iter().rev().map(|c| store.layer_dir(c)).collect();
    match lowers.as_slice() {
        [] => Ok(None),
        [one] => berth_runtime::view::dir_view(one).map(Some),
        many => berth_runtime::view::overlay_view(many, None).map(Some),
    }
    .map_err(|e| format!("mount the image's layers: {e}"))
}

/// The path of an open directory through `/proc/self/fd`, for walking it.
fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Root {
    fn dir(path: &Path) -> Result<Root, String> {
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("open the context {}: {e}", path.display()))?;
        Ok(Root { fd })
    }

    /// A read-only view of `image`'s filesystem (`None` when it has no layers).
    fn image(engine: &mut Engine, image: &Digest) -> Result<Option<Root>, String> {
        Ok(image_view(engine, image)?.map(|fd| Root { fd }))
    }

    fn stat(&self, rel: &str, follow: bool) -> Option<berth_store::PathStat> {
        berth_store::stat_in_root(self.fd.as_fd(), Path::new(rel), follow).ok()
    }

    /// The directory `rel` (not through a symlink at its end) as an entry with its owner,
    /// mode and time; `None` when it is not a directory.
    fn dir_meta(&self, rel: &str) -> Option<Entry> {
        let st = self.stat(rel, false)?;
        if st.kind != berth_store::PathKind::Dir {
            return None;
        }
        let fd = berth_store::open_dir_in_root(self.fd.as_fd(), Path::new(rel)).ok()?;
        let full = rustix::fs::fstat(&fd).ok()?;
        Some(Entry {
            mode: full.st_mode & 0o7777,
            uid: full.st_uid as u64,
            gid: full.st_gid as u64,
            mtime: full.st_mtime as u64,
            content: Content::Dir,
        })
    }

    fn is_dir(&self, rel: &str) -> bool {
        self.stat(rel, true)
            .is_some_and(|s| s.kind == berth_store::PathKind::Dir)
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Plans the copy `req` onto `base` (the stage's image so far).
pub(crate) fn plan(
    engine: &mut Engine,
    context: &Context,
    base: Option<&Digest>,
    req: &CopyRequest,
) -> Result<Plan, String> {
    plan_add(engine, context, base, req, None)
}

/// Plans `req` as [`plan`] does, with `ADD --checksum` for its URL source.
pub(crate) fn plan_add(
    engine: &mut Engine,
    context: &Context,
    base: Option<&Digest>,
    req: &CopyRequest,
    checksum: Option<&str>,
) -> Result<Plan, String> {
    let checksum = match checksum {
        None => None,
        Some(_) if req.sources.len() != 1 => {
            return Err("checksum can't be specified for multiple sources".into());
        }
        Some(_) if !fetch::is_url(&req.sources[0]) => {
            return Err("checksum can't be specified for non-HTTP(S) sources".into());
        }
        Some(value) => Some(fetch::Checksum::parse(value).map_err(|e| e.to_string())?),
    };
    let tmp_dir = engine.root().join("build").join("tmp");
    let (source_root, ignore) = match &req.from {
        Some((image, _)) => match Root::image(engine, image)? {
            Some(root) => (root, None),
            None => return Err("the --from image has no files".into()),
        },
        None => (Root::dir(&context.root)?, Some(&context.ignore)),
    };
    let root = proc_path(&source_root.fd);
    let excluded = |rel: &str| ignore.is_some_and(|i| !rel.is_empty() && i.is_excluded(rel));
    // Where a source opened in the context really is, relative to its root: a symlink may
    // lead to an excluded path, which must stay out as if it were named.
    let real_root = std::fs::read_link(&root).ok();
    let real_rel = |fd: &dyn AsRawFd| -> Option<String> {
        let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let rel = real.strip_prefix(real_root.as_ref()?).ok()?;
        Some(rel.to_string_lossy().into_owned())
    };
    // Sources: globbed, relative to the root, in order.
    let mut matched: Vec<Source> = Vec::new();
    for source in &req.sources {
        if req.extract_archives && fetch::is_git(source) {
            return Err(format!(
                "ADD {source}: adding a Git repository is not supported yet (RUN git clone)"
            ));
        }
        if fetch::is_url(source) {
            if !req.extract_archives {
                return Err(format!("source can't be a URL for COPY: {source}"));
            }
            matched.push(Source::Url(source.clone()));
            continue;
        }
        let rel = source.trim_start_matches('/').trim_end_matches('/');
        let rel = if rel.is_empty() || rel == "." {
            ""
        } else {
            rel
        };
        if has_glob(rel) {
            let depth = rel.split('/').count();
            let mut hits = Vec::new();
            for entry in walkdir::WalkDir::new(&root)
                .follow_links(false)
                .min_depth(1)
                .max_depth(depth)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| format!("walk the sources: {e}"))?;
                let path = entry
                    .path()
                    .strip_prefix(&root)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let matches = berth_dockerfile::path_match(rel, &path)
                    .map_err(|e| format!("invalid source pattern {source:?}: {e}"))?;
                if matches && !excluded(&path) {
                    hits.push(path);
                }
            }
            // A pattern that matches nothing copies nothing (BuildKit allows empty
            // wildcards).
            matched.extend(hits.into_iter().map(Source::Path));
        } else {
            if source_root.stat(rel, true).is_none() || excluded(rel) {
                return Err(format!("\"/{rel}\": not found"));
            }
            matched.push(Source::Path(rel.to_string()));
        }
    }

    let base_root = match base {
        Some(b) => Root::image(engine, b)?,
        None => None,
    };
    let is_dir_in_base = |abs: &str| base_root.as_ref().is_some_and(|r| r.is_dir(abs));
    let exists_in_base = |abs: &str| {
        base_root
            .as_ref()
            .is_some_and(|r| r.stat(abs, false).is_some())
    };

    let dest_abs = if req.dest.starts_with('/') {
        req.dest.clone()
    } else {
        format!("{}/{}", req.workdir.trim_end_matches('/'), req.dest)
    };
    let dest_clean = crate::clean_path(&dest_abs);
    let single_dir_source = req.heredocs.is_empty()
        && matches!(matched.as_slice(), [Source::Path(only)] if source_root.is_dir(only));
    let dest_is_dir = req.dest.ends_with('/')
        || req.dest.ends_with("/.")
        || req.dest == "."
        || matched.len() + req.heredocs.len() > 1
        || single_dir_source
        || is_dir_in_base(&dest_clean);

    let (uid, gid) = match &req.chown {
        Some(spec) => Some(chown_ids(spec, base_root.as_ref())?),
        None => None,
    }
    .map_or((None, None), |(u, g)| (Some(u), Some(g)));
    let from_context = req.from.is_none();
    let owner = |meta: &std::fs::Metadata| -> (u64, u64) {
        match (uid, gid) {
            (Some(u), Some(g)) => (u, g),
            // Files from the context belong to root; from an image they keep their owner.
            _ if from_context => (0, 0),
            _ => (u64::from(meta.uid()), u64::from(meta.gid())),
        }
    };
    let mode_of = |meta: &std::fs::Metadata| match req.chmod {
        Some(m) => m,
        None => meta.permissions().mode() & 0o7777,
    };

    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut open = Vec::new();
    // Unpacked archives: their members' bytes, and their own digests.
    let mut spool: Option<Arc<std::fs::File>> = None;
    // Only the context's files are remembered: an image's are read through a view whose
    // device numbers change from mount to mount.
    let hashes = context.hashes.as_ref().filter(|_| req.from.is_none());
    // The digests of what spooled entries come from (an archive, a download): the key
    // covers them once instead of every member's bytes again.
    let mut archive_digests: Vec<String> = Vec::new();
    // `host` is a path under a directory opened in the root (walked, never through a
    // symlink); `file`, a source opened in the root directly.
    let add = |entries: &mut BTreeMap<String, Entry>,
               path: &str,
               meta: &std::fs::Metadata,
               host: &Path,
               file: Option<std::fs::File>|
     -> Result<(), String> {
        let key = path.trim_start_matches('/').to_string();
        if key.is_empty() {
            return Ok(());
        }
        let (u, g) = owner(meta);
        let ft = meta.file_type();
        let content = if ft.is_dir() {
            Content::Dir
        } else if ft.is_symlink() {
            Content::Symlink(std::fs::read_link(host).map_err(|e| e.to_string())?)
        } else if ft.is_file() {
            match file {
                Some(f) => Content::Open(f),
                None => Content::File(host.to_path_buf()),
            }
        } else {
            // Devices, sockets and fifos are not copied, as BuildKit.
            return Ok(());
        };
        entries.insert(
            key,
            Entry {
                mode: if ft.is_symlink() {
                    0o777
                } else {
                    mode_of(meta)
                },
                uid: u,
                gid: g,
                mtime: meta.mtime().max(0) as u64,
                content,
            },
        );
        Ok(())
    };
    for source in &matched {
        let rel = match source {
            Source::Path(rel) => rel,
            Source::Url(url) => {
                std::fs::create_dir_all(&tmp_dir).map_err(|e| format!("create build/tmp: {e}"))?;
                let file = crate::tempfile_in(&tmp_dir).map_err(|e| e.to_string())?;
                let got =
                    fetch::download(url, file, checksum.as_ref()).map_err(|e| e.to_string())?;
                let target = if dest_is_dir {
                    format!(
                        "{}/{}",
                        dest_clean.trim_end_matches('/'),
                        fetch::file_name(url)
                    )
                } else {
                    dest_clean.clone()
                };
                archive_digests.push(format!(
                    "{target}\0{}",
                    file_digest(&got.file).map_err(|e| format!("{url}: {e}"))?
                ));
                entries.insert(
                    target.trim_start_matches('/').to_string(),
                    Entry {
                        mode: req.chmod.unwrap_or(0o600),
                        uid: uid.unwrap_or(0),
                        gid: gid.unwrap_or(0),
                        mtime: got.mtime.unwrap_or(0),
                        // Spooled, not a context file: its throw-away inode has no place in
                        // the remembered digests.
                        content: Content::Spooled {
                            len: got
                                .file
                                .metadata()
                                .map_err(|e| format!("{url}: {e}"))?
                                .len(),
                            spool: Arc::new(got.file),
                            offset: 0,
                        },
                    },
                );
                continue;
            }
        };
        let rel_path = Path::new(if rel.is_empty() { "." } else { rel.as_str() });
        if source_root.is_dir(rel) {
            // A directory's contents go into the destination.
            let dir = berth_store::open_dir_in_root(source_root.fd.as_fd(), rel_path)
                .map_err(|e| format!("open {rel}: {e}"))?;
            // Exclusions apply to where the directory really is (through a symlink).
            let rel = match real_rel(&dir) {
                Some(real) if ignore.is_some() => {
                    if excluded(&real) {
                        return Err(format!("\"/{rel}\": not found"));
                    }
                    real
                }
                _ => rel.clone(),
            };
            let host = proc_path(&dir);
            open.push(dir);
            let meta = std::fs::metadata(&host).map_err(|e| format!("{rel}: {e}"))?;
            let target_root = dest_clean.clone();
            if !exists_in_base(&target_root) {
                add(&mut entries, &target_root, &meta, &host, None)?;
            }
            // An excluded directory is not walked unless an exception may re-include
            // something under it.
            let skip = |e: &walkdir::DirEntry| {
                let Some(rules) = ignore else {
                    return false;
                };
                let Ok(sub) = e.path().strip_prefix(&host) else {
                    return false;
                };
                let sub = sub.to_string_lossy();
                let in_root = if rel.is_empty() {
                    sub.into_owned()
                } else {
                    format!("{rel}/{sub}")
                };
                e.file_type().is_dir()
                    && rules.is_excluded(&in_root)
                    && rules.can_skip_dir(&in_root)
            };
            for entry in walkdir::WalkDir::new(&host)
                .follow_links(false)
                .min_depth(1)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| !skip(e))
            {
                let entry = entry.map_err(|e| format!("walk {rel}: {e}"))?;
                let sub = entry
                    .path()
                    .strip_prefix(&host)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let in_root = if rel.is_empty() {
                    sub.clone()
                } else {
                    format!("{rel}/{sub}")
                };
                if excluded(&in_root) {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| format!("{in_root}: {e}"))?;
                add(
                    &mut entries,
                    &format!("{target_root}/{sub}"),
                    &meta,
                    entry.path(),
                    None,
                )?;
            }
        } else {
            let file = berth_store::open_file_in_root(source_root.fd.as_fd(), rel_path)
                .map_err(|e| format!("{rel}: {e}"))?;
            if ignore.is_some() && real_rel(&file).is_some_and(|real| excluded(&real)) {
                return Err(format!("\"/{rel}\": not found"));
            }
            let meta = file.metadata().map_err(|e| format!("{rel}: {e}"))?;
            if req.extract_archives && meta.is_file() && archive::is_archive(&file) {
                let spool = match &spool {
                    Some(s) => s.clone(),
                    None => {
                        std::fs::create_dir_all(&tmp_dir)
                            .map_err(|e| format!("create build/tmp: {e}"))?;
                        let s = Arc::new(crate::tempfile_in(&tmp_dir).map_err(|e| e.to_string())?);
                        spool = Some(s.clone());
                        s
                    }
                };
                let tree = archive::unpack(&file, &spool, uid.zip(gid), now)
                    .map_err(|e| format!("unpack {rel}: {e}"))?;
                let archive_digest = match hashes {
                    Some(hashes) => hashes.digest(&file).map(hex::encode),
                    None => file_digest(&file),
                }
                .map_err(|e| format!("{rel}: {e}"))?;
                archive_digests.push(format!("{dest_clean}\0{archive_digest}"));
                let dest_entry = Entry {
                    mode: 0o755,
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                    mtime: now,
                    content: Content::Dir,
                };
                merge_archive(
                    &mut entries,
                    &dest_clean,
                    tree,
                    &spool,
                    dest_entry,
                    &exists_in_base,
                )?;
                continue;
            }
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let target = if dest_is_dir {
                format!("{}/{name}", dest_clean.trim_end_matches('/'))
            } else {
                dest_clean.clone()
            };
            add(&mut entries, &target, &meta, Path::new(rel), Some(file))?;
        }
    }
    for (name, content) in &req.heredocs {
        let target = if dest_is_dir {
            format!("{}/{name}", dest_clean.trim_end_matches('/'))
        } else {
            dest_clean.clone()
        };
        entries.insert(
            target.trim_start_matches('/').to_string(),
            Entry {
                mode: req.chmod.unwrap_or(0o644),
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
                mtime: 0,
                content: Content::Bytes(content.clone().into_bytes()),
            },
        );
    }
    // Parent directories: missing ones made as `mkdir -p` would; those the image has are
    // written as they are there (owner, mode, time), since a directory in a layer stands for
    // the whole directory (`/tmp` keeps its 1777, a chowned directory its owner).
    let mut parents = Vec::new();
    for path in entries.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let s = p.to_string_lossy().into_owned();
            if !entries.contains_key(&s) {
                parents.push(s);
            }
            parent = p.parent();
        }
    }
    for p in parents {
        if entries.contains_key(&p) {
            continue;
        }
        let abs = format!("/{p}");
        let entry = if exists_in_base(&abs) {
            // A symlink (or anything but a directory) stays as the image has it.
            match base_root.as_ref().and_then(|r| r.dir_meta(&abs)) {
                Some(meta) => meta,
                None => continue,
            }
        } else {
            Entry {
                mode: 0o755,
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
                mtime: now,
                content: Content::Dir,
            }
        };
        entries.insert(p, entry);
    }

    let mut digest = Sha256::new();
    for archive in &archive_digests {
        digest.update(b"archive\0");
        digest.update(archive.as_bytes());
        digest.update([0]);
    }
    for (path, e) in &entries {
        digest.update(path.as_bytes());
        digest.update(format!("\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
        match &e.content {
            Content::Dir => digest.update(b"d"),
            Content::Symlink(t) => {
                digest.update(b"l");
                digest.update(t.as_os_str().as_encoded_bytes());
            }
            Content::Bytes(b) => {
                digest.update(b"f");
                digest.update(b);
            }
            Content::Link { target, .. } => {
                digest.update(b"h");
                digest.update(target.as_bytes());
            }
            // A context file by its remembered digest (read only when it changed).
            Content::File(p) if let Some(hashes) = hashes => {
                let f = std::fs::File::open(p).map_err(|x| format!("{path}: {x}"))?;
                digest.update(b"F");
                digest.update(hashes.digest(&f).map_err(|x| format!("{path}: {x}"))?);
            }
            Content::Open(f) if let Some(hashes) = hashes => {
                digest.update(b"F");
                digest.update(hashes.digest(f).map_err(|x| format!("{path}: {x}"))?);
            }
            // The archive's or the download's digest above covers these bytes.
            Content::Spooled { offset, len, .. } => {
                digest.update(format!("s{offset}\0{len}").as_bytes());
            }
            Content::File(_) | Content::Open(_) => {
                digest.update(b"f");
                let (mut f, _) = e.content.reader().map_err(|x| format!("{path}: {x}"))?;
                std::io::copy(&mut f, &mut HashWriter(&mut digest))
                    .map_err(|x| format!("{path}: {x}"))?;
            }
        }
        digest.update([0]);
    }
    if let Some(hashes) = hashes
        && let Err(e) = hashes.save()
    {
        tracing::warn!("remember the context's file digests: {e}");
    }
    Ok(Plan {
        digest: hex::encode(digest.finalize()),
        entries,
        _open: {
            open.push(source_root.fd);
            open
        },
    })
}

/// Puts an unpacked archive's members under `dest` (absolute, cleaned): the directory
/// itself (`dest_entry`, unless the image or the plan has it), implied parents where nothing
/// is yet, and each member over what was there (a directory over a directory merges).
fn merge_archive(
    entries: &mut BTreeMap<String, Entry>,
    dest: &str,
    tree: archive::Tree,
    spool: &Arc<std::fs::File>,
    dest_entry: Entry,
    exists_in_base: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let dest_key = dest.trim_start_matches('/');
    let key_of = |path: &str| {
        if dest_key.is_empty() {
            path.to_string()
        } else {
            format!("{dest_key}/{path}")
        }
    };
    if !dest_key.is_empty() {
        match entries.get(dest_key) {
            Some(Entry {
                content: Content::Dir,
                ..
            }) => {}
            Some(_) => return Err(format!("cannot unpack into {dest}: not a directory")),
            None if exists_in_base(dest) => {}
            None => {
                entries.insert(dest_key.to_string(), dest_entry);
            }
        }
    }
    for (path, member) in tree {
        let key = key_of(&path);
        if member.implied && (entries.contains_key(&key) || exists_in_base(&format!("/{key}"))) {
            continue;
        }
        let content = match member.kind {
            MemberKind::Dir => Content::Dir,
            MemberKind::File { offset, len } => Content::Spooled {
                spool: spool.clone(),
                offset,
                len,
            },
            MemberKind::Symlink(target) => {
                Content::Symlink(PathBuf::from(OsString::from_vec(target)))
            }
            MemberKind::HardLink {
                target,
                offset,
                len,
            } => Content::Link {
                target: key_of(&target),
                spool: spool.clone(),
                offset,
                len,
            },
        };
        let is_dir = matches!(content, Content::Dir);
        let was_dir = matches!(
            entries.get(&key),
            Some(Entry {
                content: Content::Dir,
                ..
            })
        );
        if !(is_dir && was_dir) {
            let beneath = format!("{key}/");
            let replaced: Vec<String> = entries
                .range(beneath.clone()..)
                .map(|(k, _)| k)
                .take_while(|k| k.starts_with(&beneath))
                .cloned()
                .collect();
            for k in replaced {
                entries.remove(&k);
            }
        }
        let mode = if matches!(content, Content::Symlink(_)) {
            0o777
        } else {
            member.mode
        };
        entries.insert(
            key,
            Entry {
                mode,
                uid: member.uid,
                gid: member.gid,
                mtime: member.mtime,
                content,
            },
        );
    }
    Ok(())
}

/// The SHA-256 of a file's bytes, in hex.
fn file_digest(file: &std::fs::File) -> std::io::Result<String> {
    let len = file.metadata()?.len();
    let mut digest = Sha256::new();
    std::io::copy(&mut ReadAt::new(file, 0, len), &mut HashWriter(&mut digest))?;
    Ok(hex::encode(digest.finalize()))
}

/// Feeds what is written into a digest.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Content {
    /// A file's bytes from the start, and its length.
    fn reader(&self) -> std::io::Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Content::File(path) => {
                let f = std::fs::File::open(path)?;
                let len = f.metadata()?.len();
                Ok((Box::new(f.take(len)), len))
            }
            Content::Open(f) => {
                let mut f: &std::fs::File = f;
                f.rewind()?;
                let len = f.metadata()?.len();
                Ok((Box::new(f.take(len)), len))
            }
            Content::Spooled { spool, offset, len }
            | Content::Link {
                spool, offset, len, ..
            } => Ok((Box::new(ReadAt::new(&**spool, *offset, *len)), *len)),
            _ => Ok((Box::new(std::io::empty()), 0)),
        }
    }
}

/// `WORKDIR`'s directory as a layer (BuildKit's `mkdir -p`, mode 0755): the components the
/// image lacks, owned by `user` (the `USER` in effect, or root), and those it has as they
/// are there.
pub(crate) fn mkdir_plan(
    engine: &mut Engine,
    base: Option<&Digest>,
    path: &str,
    user: Option<&str>,
) -> Result<Plan, String> {
    let base_root = match base {
        Some(b) => Root::image(engine, b)?,
        None => None,
    };
    let (uid, gid) = match user.filter(|u| !u.is_empty()) {
        Some(u) => chown_ids(u, base_root.as_ref())?,
        None => (0, 0),
    };
    let mut entries = BTreeMap::new();
    let mut rel = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(part);
        let abs = format!("/{rel}");
        let existing = base_root.as_ref().filter(|r| r.stat(&abs, false).is_some());
        let entry = match existing {
            Some(root) => match root.dir_meta(&abs) {
                Some(meta) => meta,
                // A symlink or a file: left to the kernel when the step's containers chdir.
                None => break,
            },
            None => Entry {
                mode: 0o755,
                uid,
                gid,
                mtime: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                content: Content::Dir,
            },
        };
        entries.insert(rel.clone(), entry);
    }
    let mut digest = Sha256::new();
    for (path, e) in &entries {
        digest.update(format!("{path}\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
    }
    Ok(Plan {
        digest: hex::encode(digest.finalize()),
        entries,
        _open: base_root.map(|r| vec![r.fd]).unwrap_or_default(),
    })
}

/// `--chown=user[:group]` (and `WORKDIR`'s owner): numeric ids, or names from the image's
/// `/etc/passwd` and `/etc/group` (a user name alone: its passwd group).
fn chown_ids(spec: &str, base: Option<&Root>) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // A bare uid owns with the same gid, as BuildKit's `--chown=1000`.
    if let Ok(uid) = user.parse::<u64>()
        && group.is_none_or(|g| g.parse::<u64>().is_ok())
    {
        let gid = group
            .map_or(Ok(uid), str::parse)
            .map_err(|e| e.to_string())?;
        return Ok((uid, gid));
    }
    // Names through the image's files, with the runtime's own rules for `USER`.
    let read = |file: &str| {
        base.and_then(|b| berth_store::open_file_in_root(b.fd.as_fd(), Path::new(file)).ok())
            .and_then(|f| std::io::read_to_string(f).ok())
    };
    let (passwd, groups) = (read("etc/passwd"), read("etc/group"));
    let ids = berth_runtime::user::resolve(spec, passwd.as_deref(), groups.as_deref(), &[])
        .map_err(|e| e.to_string())?;
    Ok((u64::from(ids.uid), u64::from(ids.gid)))
}

impl Plan {
    /// Whether the hard link `content` still has its member to link to, written before it.
    fn link_holds(&self, content: &Content) -> bool {
        let Content::Link {
            target,
            spool,
            offset,
            ..
        } = content
        else {
            return false;
        };
        matches!(
            self.entries.get(target).map(|e| &e.content),
            Some(Content::Spooled { spool: s, offset: o, .. }) if o == offset && Arc::ptr_eq(s, spool)
        )
    }

    /// Writes the layer tar: hard links last, so that their targets come before them.
    pub(crate) fn write(&self, out: &mut dyn Write) -> Result<(), String> {
        let mut tar = tar::Builder::new(out);
        let (links, others): (Vec<_>, Vec<_>) = self
            .entries
            .iter()
            .partition(|(_, e)| self.link_holds(&e.content));
        for (path, e) in others.into_iter().chain(links) {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(e.mtime);
            let err = |x: std::io::Error| format!("write {path}: {x}");
            match &e.content {
                Content::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(err)?;
                }
                Content::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target).map_err(err)?;
                }
                Content::Bytes(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(bytes.len() as u64);
                    tar.append_data(&mut h, path, &bytes[..]).map_err(err)?;
                }
                Content::Link { target, .. } if self.link_holds(&e.content) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target).map_err(err)?;
                }
                Content::File(_)
                | Content::Open(_)
                | Content::Spooled { .. }
                | Content::Link { .. } => {
                    let (reader, len) = e.content.reader().map_err(err)?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    tar.append_data(&mut h, path, reader).map_err(err)?;
                }
            }
        }
        tar.finish().map_err(|e| format!("finish the layer: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_a_segment() {
        let m = |p: &str, t: &str| berth_dockerfile::path_match(p, t).unwrap();
        assert!(m("*.py", "train.py"));
        assert!(!m("*.py", "train.pyc"));
        assert!(m("data?.csv", "data1.csv"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("\\*", "*"));
        assert!(!m("*.py", "src/train.py"), "* stays within a segment");
    }

    #[test]
    fn chown_by_number_and_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(chown_ids("10", None).unwrap(), (10, 10));
        assert_eq!(chown_ids("10:20", None).unwrap(), (10, 20));
        let root = Root::dir(dir.path()).unwrap();
        assert_eq!(chown_ids("app:staff", Some(&root)).unwrap(), (1000, 50));
        assert!(chown_ids("nobody", Some(&root)).is_err());
    }

    #[test]
    fn archive_members_merge_and_hard_links_come_last() {
        use std::io::Write as _;
        let spool = Arc::new(tempfile::tempfile().unwrap());
        (&*spool).write_all(b"shared").unwrap();
        let member = |kind| archive::Member {
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: 3,
            kind,
            implied: false,
        };
        let file = MemberKind::File { offset: 0, len: 6 };
        let link = |target: &str| MemberKind::HardLink {
            target: target.into(),
            offset: 0,
            len: 6,
        };
        let dir_entry = || Entry {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            content: Content::Dir,
        };
        // An earlier source left a directory where the archive has a file.
        let mut entries = BTreeMap::new();
        entries.insert("opt/x/z".to_string(), dir_entry());
        entries.insert("opt/x/z/old".to_string(), dir_entry());
        let tree = archive::Tree::from([
            ("z".to_string(), member(file.clone())),
            ("a".to_string(), member(link("z"))),
            ("b".to_string(), member(link("gone"))),
        ]);
        let no_base = |_: &str| false;
        merge_archive(&mut entries, "/opt/x", tree, &spool, dir_entry(), &no_base).unwrap();
        assert!(
            !entries.contains_key("opt/x/z/old"),
            "replaced with its directory"
        );
        let plan = Plan {
            digest: String::new(),
            entries,
            _open: Vec::new(),
        };
        let mut layer = Vec::new();
        plan.write(&mut layer).unwrap();
        let mut archive = tar::Archive::new(&layer[..]);
        let written: Vec<(String, tar::EntryType, String)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let body = link.unwrap_or_else(|| std::io::read_to_string(&mut e).unwrap());
                (path, kind, body)
            })
            .collect();
        use tar::EntryType as T;
        let expected = [
            ("opt/x/", T::Directory, ""),
            ("opt/x/b", T::Regular, "shared"),
            ("opt/x/z", T::Regular, "shared"),
            ("opt/x/a", T::Link, "opt/x/z"),
        ];
        let written: Vec<(&str, T, &str)> = written
            .iter()
            .map(|(p, k, b)| (p.as_str(), *k, b.as_str()))
            .collect();
        assert_eq!(written, expected, "a link to nothing is a copy");
    }

    #[test]
    fn sources_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::dir(dir.path()).unwrap();
        let read = |rel: &str| {
            berth_store::open_file_in_root(root.fd.as_fd(), Path::new(rel))
                .ok()
                .and_then(|f| std::io::read_to_string(f).ok())
        };
        // Out of the root: `..` and an absolute symlink resolve inside it, to nothing here.
        assert_eq!(read("../etc/passwd"), None);
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert_eq!(read("link/passwd"), None);
        assert!(root.stat("link", false).is_some());
        // ... and to the root's own file once it has one; symlinks within it are followed.
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "mine\n").unwrap();
        assert_eq!(read("link/passwd").as_deref(), Some("mine\n"));
        std::os::unix::fs::symlink("etc", dir.path().join("relative")).unwrap();
        assert!(root.is_dir("relative"));
    }
}
