//! `COPY` and `ADD`: what a step copies (sources globbed in the context, less what
//! `.dockerignore` excludes, or in another stage's image), where each file lands under
//! Docker's destination rules, a digest of it all for the cache key (names, modes, owners
//! and bytes; never mtimes), and the layer tar written from it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
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
    File(PathBuf),
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
    /// Keeps a `--from` image's detached mount alive while its files are read.
    _view: Option<OwnedFd>,
}

/// A detached read-only view of `image`'s filesystem, and its path through `/proc/self/fd`.
fn image_view(engine: &mut Engine, image: &Digest) -> Result<Option<(OwnedFd, PathBuf)>, String> {
    let store = engine.store();
    let record = store
        .resolve(&image.to_string())
        .map_err(|e| e.to_string())?;
    let chains = store
        .image(record)
        .and_then(|i| i.chain_ids())
        .map_err(|e| e.to_string())?;
    let lowers: Vec<PathBuf> = chains.iter().rev().map(|c| store.layer_dir(c)).collect();
    let view = match lowers.as_slice() {
        [] => return Ok(None),
        [one] => berth_runtime::view::dir_view(one),
        many => berth_runtime::view::overlay_view(many, None),
    }
    .map_err(|e| format!("mount the image's layers: {e}"))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", view.as_raw_fd()));
    Ok(Some((view, path)))
}

/// `root/rel`, refusing a path whose directories include a symlink (which could lead out
/// of the context or image).
fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == ".." {
            return Err(format!("{rel:?}: a source outside the build context"));
        }
        path.push(part);
        if i + 1 < parts.len()
            && let Ok(meta) = std::fs::symlink_metadata(&path)
            && meta.file_type().is_symlink()
        {
            return Err(format!(
                "{rel:?}: the path goes through a symlink, which berth does not follow yet"
            ));
        }
    }
    Ok(path)
}

/// Whether `text` matches the glob segment `pattern` (`*`, `?`, `[...]` as Go's
/// filepath.Match, within one path segment).
fn segment_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return false;
                };
                let Some(c) = t.first() else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &t[1..])
            }
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
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
    let (view, root, ignore) = match &req.from {
        Some((image, _)) => match image_view(engine, image)? {
            Some((fd, path)) => (Some(fd), path, None),
            None => return Err("the --from image has no files".into()),
        },
        None => (None, context.root.clone(), Some(&context.ignore)),
    };
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
            let pattern: Vec<&str> = rel.split('/').collect();
            let mut hits = Vec::new();
            for entry in walkdir::WalkDir::new(&root)
                .follow_links(false)
                .min_depth(1)
                .max_depth(pattern.len())
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| format!("walk the sources: {e}"))?;
                let path = entry
                    .path()
                    .strip_prefix(&root)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let parts: Vec<&str> = path.split('/').collect();
                if parts.len() == pattern.len()
                    && parts
                        .iter()
                        .zip(&pattern)
                        .all(|(t, p)| segment_matches(p, t))
                    && !excluded(&path)
                {
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
            let path = inside(&root, rel)?;
            if std::fs::symlink_metadata(&path).is_err() || excluded(rel) {
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
    let base_view = match base {
        Some(b) => image_view(engine, b)?,
        None => None,
    };
    let base_root = base_view.as_ref().map(|(_, p)| p.clone());
    let is_dir_in_base = |abs: &str| {
        base_root.as_ref().is_some_and(|r| {
            inside(r, abs.trim_start_matches('/'))
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| m.is_dir())
        })
    };
    let exists_in_base = |abs: &str| {
        base_root.as_ref().is_some_and(|r| {
            inside(r, abs.trim_start_matches('/'))
                .ok()
                .is_some_and(|p| std::fs::symlink_metadata(p).is_ok())
        })
    };

    let dest_abs = if req.dest.starts_with('/') {
        req.dest.clone()
    } else {
        format!("{}/{}", req.workdir.trim_end_matches('/'), req.dest)
    };
    let dest_clean = crate::clean_path(&dest_abs);
    let single_dir_source = matched.len() == 1
        && req.heredocs.is_empty()
        && std::fs::metadata(inside(&root, &matched[0])?).is_ok_and(|m| m.is_dir());
    let dest_is_dir = req.dest.ends_with('/')
        || req.dest.ends_with("/.")
        || req.dest == "."
        || matched.len() + req.heredocs.len() > 1
        || single_dir_source
        || is_dir_in_base(&dest_clean);

    let (uid, gid) = match &req.chown {
        Some(spec) => Some(chown_ids(spec, base_root.as_deref())?),
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
    let mut add = |path: &str, meta: &std::fs::Metadata, host: &Path| -> Result<(), String> {
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
            Content::File(host.to_path_buf())
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
        let host = inside(&root, rel)?;
        let meta = std::fs::symlink_metadata(&host).map_err(|e| format!("{rel}: {e}"))?;
        if meta.is_dir() {
            // A directory's contents go into the destination.
            let target_root = dest_clean.clone();
            if !exists_in_base(&target_root) {
                add(&target_root, &meta, &host)?;
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
                add(&format!("{target_root}/{sub}"), &meta, entry.path())?;
            }
        } else {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let target = if dest_is_dir {
                format!("{}/{name}", dest_clean.trim_end_matches('/'))
            } else {
                dest_clean.clone()
            };
            add(&target, &meta, &host)?;
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
            Content::File(p) => {
                digest.update(b"f");
                let mut f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    if n == 0 {
                        break;
                    }
                    digest.update(&buf[..n]);
                }
            }
        }
        digest.update([0]);
    }
    Ok(Plan {
        digest: hex::encode(digest.finalize()),
        entries,
        _view: view,
    })
}

/// `--chown=user[:group]`: numeric ids, or names from the image's `/etc/passwd` and
/// `/etc/group`. A user alone gives the group of the same number, as Docker.
fn chown_ids(spec: &str, base: Option<&Path>) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<u64, String> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok(n);
        }
        let text = base
            .and_then(|b| std::fs::read_to_string(b.join(file)).ok())
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
                Content::File(host) => {
                    let f = std::fs::File::open(host).map_err(err)?;
                    let len = f.metadata().map_err(err)?.len();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    tar.append_data(&mut h, path, f.take(len)).map_err(err)?;
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
        assert!(segment_matches("*.py", "train.py"));
        assert!(!segment_matches("*.py", "train.pyc"));
        assert!(segment_matches("data?.csv", "data1.csv"));
        assert!(segment_matches("[a-c]x", "bx"));
        assert!(!segment_matches("[^a-c]x", "bx"));
        assert!(segment_matches("\\*", "*"));
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
        assert_eq!(
            chown_ids("app:staff", Some(dir.path())).unwrap(),
            (1000, 50)
        );
        assert!(chown_ids("nobody", Some(dir.path())).is_err());
    }

    #[test]
    fn sources_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        assert!(inside(dir.path(), "../etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert!(inside(dir.path(), "link/passwd").is_err());
        assert!(inside(dir.path(), "link").is_ok());
    }
}
