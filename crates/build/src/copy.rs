//! `COPY` and `ADD`: what a step copies (sources globbed in the context, less what
//! `.dockerignore` excludes, or in another stage's image), where each file lands under
//! Docker's destination rules, a digest of it all for the cache key (names, modes, owners
//! and bytes; never mtimes), and the layer tar written from it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_dockerfile::ignore::IgnoreRules;
use berth_engine::Engine;
use berth_reference::Digest;
use sha2::{Digest as _, Sha256};

/// The build context: a directory and its `.dockerignore`.
pub(crate) struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
}

impl Context {
    pub(crate) fn new(root: PathBuf, ignore: IgnoreRules) -> Context {
        Context { root, ignore }
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
    /// `ADD`: local archives are unpacked (not supported yet: refused rather than copied).
    pub(crate) extract_archives: bool,
}

impl CopyRequest {
    /// The instruction as history and the cache key show it.
    pub(crate) fn describe(&self) -> String {
        let mut words = Vec::new();
        if let Some((_, name)) = &self.from {
            words.push(format!("--from={name}"));
        }
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

/// A tree whose paths resolve inside it, symlinks followed but never out of it (with
/// `berth_store`'s `RESOLVE_IN_ROOT` helpers): the context, or an image's detached view.
struct Root {
    fd: OwnedFd,
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
        let store = engine.store();
        let record = store
            .resolve(&image.to_string())
            .map_err(|e| e.to_string())?;
        let chains = store
            .image(record)
            .and_then(|i| i.chain_ids())
            .map_err(|e| e.to_string())?;
        let lowers: Vec<PathBuf> = chains.iter().rev().map(|c| store.layer_dir(c)).collect();
        let fd = match lowers.as_slice() {
            [] => return Ok(None),
            [one] => berth_runtime::view::dir_view(one),
            many => berth_runtime::view::overlay_view(many, None),
        }
        .map_err(|e| format!("mount the image's layers: {e}"))?;
        Ok(Some(Root { fd }))
    }

    fn stat(&self, rel: &str, follow: bool) -> Option<berth_store::PathStat> {
        berth_store::stat_in_root(self.fd.as_fd(), Path::new(rel), follow).ok()
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
    let (source_root, ignore) = match &req.from {
        Some((image, _)) => match Root::image(engine, image)? {
            Some(root) => (root, None),
            None => return Err("the --from image has no files".into()),
        },
        None => (Root::dir(&context.root)?, Some(&context.ignore)),
    };
    let root = proc_path(&source_root.fd);
    let excluded = |rel: &str| ignore.is_some_and(|i| !rel.is_empty() && i.is_excluded(rel));
    // Sources: globbed, relative to the root, in order.
    let mut matched: Vec<String> = Vec::new();
    for source in &req.sources {
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
            if hits.is_empty() {
                return Err(format!(
                    "no source files were specified: {source:?} matches nothing"
                ));
            }
            matched.extend(hits);
        } else {
            if source_root.stat(rel, true).is_none() || excluded(rel) {
                return Err(format!("\"/{rel}\": not found"));
            }
            matched.push(rel.to_string());
        }
    }

    if req.extract_archives
        && let Some(archive) = matched.iter().find(|m| {
            [
                ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst",
            ]
            .iter()
            .any(|ext| m.ends_with(ext))
        })
    {
        return Err(format!(
            "ADD {archive}: unpacking local archives is not supported yet (COPY it, or RUN tar)"
        ));
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
    let single_dir_source =
        matched.len() == 1 && req.heredocs.is_empty() && source_root.is_dir(&matched[0]);
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

    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut open = Vec::new();
    // `host` is a path under a directory opened in the root (walked, never through a
    // symlink); `file`, a source opened in the root directly.
    let mut add = |path: &str,
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
    for rel in &matched {
        let rel_path = Path::new(if rel.is_empty() { "." } else { rel.as_str() });
        if source_root.is_dir(rel) {
            // A directory's contents go into the destination.
            let dir = berth_store::open_dir_in_root(source_root.fd.as_fd(), rel_path)
                .map_err(|e| format!("open {rel}: {e}"))?;
            let host = proc_path(&dir);
            open.push(dir);
            let meta = std::fs::metadata(&host).map_err(|e| format!("{rel}: {e}"))?;
            let target_root = dest_clean.clone();
            if !exists_in_base(&target_root) {
                add(&target_root, &meta, &host, None)?;
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
                add(&format!("{target_root}/{sub}"), &meta, entry.path(), None)?;
            }
        } else {
            let file = berth_store::open_file_in_root(source_root.fd.as_fd(), rel_path)
                .map_err(|e| format!("{rel}: {e}"))?;
            let meta = file.metadata().map_err(|e| format!("{rel}: {e}"))?;
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let target = if dest_is_dir {
                format!("{}/{name}", dest_clean.trim_end_matches('/'))
            } else {
                dest_clean.clone()
            };
            add(&target, &meta, Path::new(rel), Some(file))?;
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
    // Missing parent directories, made as `mkdir -p` would.
    let mut parents = Vec::new();
    for path in entries.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let s = p.to_string_lossy().into_owned();
            if !entries.contains_key(&s) && !exists_in_base(&format!("/{s}")) {
                parents.push(s);
            }
            parent = p.parent();
        }
    }
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    for p in parents {
        entries.entry(p).or_insert(Entry {
            mode: 0o755,
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
            mtime: now,
            content: Content::Dir,
        });
    }

    let mut digest = Sha256::new();
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
            Content::File(_) | Content::Open(_) => {
                digest.update(b"f");
                let (mut f, _) = e.content.reader().map_err(|x| format!("{path}: {x}"))?;
                std::io::copy(&mut f, &mut HashWriter(&mut digest))
                    .map_err(|x| format!("{path}: {x}"))?;
            }
        }
        digest.update([0]);
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
        use std::io::Seek;
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
            _ => Ok((Box::new(std::io::empty()), 0)),
        }
    }
}

/// `--chown=user[:group]`: numeric ids, or names from the image's `/etc/passwd` and
/// `/etc/group`. A user alone gives the group of the same number, as Docker.
fn chown_ids(spec: &str, base: Option<&Root>) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<u64, String> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok(n);
        }
        let text = base
            .and_then(|b| berth_store::open_file_in_root(b.fd.as_fd(), Path::new(file)).ok())
            .and_then(|f| std::io::read_to_string(f).ok())
            .unwrap_or_default();
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name)).then(|| f.get(2)?.parse::<u64>().ok())?
            })
            .ok_or_else(|| format!("unable to find {name} in /{file} of the image for --chown"))
    };
    let uid = lookup("etc/passwd", user)?;
    let gid = match group {
        Some(g) => lookup("etc/group", g)?,
        None => uid,
    };
    Ok((uid, gid))
}

impl Plan {
    /// Writes the layer tar.
    pub(crate) fn write(&self, out: &mut dyn Write) -> Result<(), String> {
        let mut tar = tar::Builder::new(out);
        for (path, e) in &self.entries {
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
                Content::File(_) | Content::Open(_) => {
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
