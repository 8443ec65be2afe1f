//! `RUN --mount`: what a step's container gets mounted besides its image, as BuildKit has
//! it.
//!
//! - `type=cache`: a directory kept across builds, one per `id` (the target by default),
//!   under `<root>/build/cache-mounts/`, shared, locked or private (`sharing=`) through a
//!   lock file next to it; `builder prune` removes them ([`prune_cache_mounts`]).
//! - `type=bind`: a path of the context, a stage or an image, read-only unless `rw`, whose
//!   writes then go to a throw-away upper directory. A context path is mounted where it is
//!   when `.dockerignore` excludes nothing, and otherwise from a copy of what the build may
//!   see; an image's layers are mounted as an overlay.
//! - `type=tmpfs`; `type=secret`: a `--secret` as a file on a tmpfs (never on disk) or in
//!   an environment variable (`env=`).
//!
//! What the step mounts is staged under `<root>/build/mounts/<pid>-<n>/` and removed when
//! the step ends ([`Prepared`]'s drop), or by the next build after a crash ([`sweep`]). The
//! mount points the runtime creates in the image are not the step's changes
//! ([`berth_engine::Engine::remove_mount_stubs`]).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_dockerfile::{MountKind, RunMount};
use berth_engine::{Engine, mounts::MountRequest};
use berth_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::copy;

/// Where a bind or cache mount's content comes from.
pub(crate) enum Origin {
    /// The build context.
    Context,
    /// A stage's or an image's filesystem: its ID and the name as written.
    Image(Digest, String),
}

/// One `--mount` of a `RUN`, expanded, its target absolute.
pub(crate) struct Spec {
    pub(crate) mount: RunMount,
    pub(crate) origin: Origin,
    /// A bind of the context: the digest of what it shows (names, modes, bytes), which is
    /// part of the step's cache key as `COPY`'s sources are.
    pub(crate) digest: Option<String>,
}

impl Spec {
    /// What of the mount decides the step's result, for its cache key: not a cache's or a
    /// secret's content, as BuildKit.
    pub(crate) fn key(&self) -> String {
        let m = &self.mount;
        let origin = match &self.origin {
            Origin::Context => "context".to_string(),
            Origin::Image(id, _) => id.to_string(),
        };
        format!(
            "{:?} target={} source={:?} from={origin} digest={:?} ro={} id={:?} sharing={:?} \
             mode={:?} uid={:?} gid={:?} size={:?} env={:?}",
            m.kind,
            m.target,
            m.source,
            self.digest,
            m.read_only,
            m.id,
            m.sharing,
            m.mode,
            m.uid,
            m.gid,
            m.size,
            m.env
        )
    }
}

/// The mounts of a step's container, set up; dropping it takes them down.
pub(crate) struct Prepared {
    /// The container's mounts.
    pub(crate) requests: Vec<MountRequest>,
    /// `KEY=value` for secrets with `env=`.
    pub(crate) env: Vec<String>,
    /// The targets, whose mount points are not the step's changes.
    pub(crate) targets: Vec<String>,
    /// This step's staging directory.
    staging: PathBuf,
    /// Mounts attached under it, unmounted first.
    attached: Vec<PathBuf>,
    /// Cache mount locks, held while the step runs.
    _locks: Vec<std::fs::File>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for path in self.attached.iter().rev() {
            if let Err(e) = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
                tracing::warn!("unmount {}: {e}", path.display());
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("remove {}: {e}", self.staging.display());
        }
    }
}

fn mounts_dir(root: &Path) -> PathBuf {
    root.join("build").join("mounts")
}

fn cache_mounts_dir(root: &Path) -> PathBuf {
    root.join("build").join("cache-mounts")
}

/// Takes down what builds that died left staged (their pid is gone).
pub(crate) fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(mounts_dir(root)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(entry.path()) {
            for child in children.flatten() {
                let _ = rustix::mount::unmount(child.path(), rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Sets up `specs` for one step (`secrets`: `--secret`, by id).
pub(crate) fn prepare(
    engine: &mut Engine,
    context: &copy::Context,
    specs: &[Spec],
    secrets: &BTreeMap<String, Vec<u8>>,
) -> Result<Prepared, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let staging = mounts_dir(engine.root()).join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&staging).map_err(|e| format!("create {}: {e}", staging.display()))?;
    let mut prepared = Prepared {
        requests: Vec::new(),
        env: Vec::new(),
        targets: Vec::new(),
        staging,
        attached: Vec::new(),
        _locks: Vec::new(),
    };
    for (n, spec) in specs.iter().enumerate() {
        let m = &spec.mount;
        match m.kind {
            MountKind::Bind => {
                let source = bind_source(engine, context, spec, &mut prepared, n)?;
                let request = if m.read_only {
                    MountRequest::bind(&source.path, &m.target, true)
                } else {
                    let copy = prepared.writable_copy(&source, n)?;
                    MountRequest::bind(&copy, &m.target, false)
                };
                prepared.requests.push(request);
            }
            MountKind::Cache => {
                let dir = prepared.cache_dir(engine, context, spec, n)?;
                prepared
                    .requests
                    .push(MountRequest::bind(&dir, &m.target, m.read_only));
            }
            MountKind::Tmpfs => {
                let size = m.size.unwrap_or(0).min(i64::MAX as u64) as i64;
                prepared.requests.push(MountRequest::tmpfs(&m.target, size));
            }
            MountKind::Secret => {
                let id = m.id.clone().unwrap_or_default();
                let Some(value) = secrets.get(&id) else {
                    if m.required {
                        return Err(format!(
                            "secret {id} not found: pass it with --secret id={id},src=FILE"
                        ));
                    }
                    continue;
                };
                if let Some(var) = &m.env {
                    prepared
                        .env
                        .push(format!("{var}={}", String::from_utf8_lossy(value)));
                }
                if !m.target.is_empty() {
                    let file = prepared.secret_file(m, value, n)?;
                    prepared
                        .requests
                        .push(MountRequest::bind(&file, &m.target, true));
                }
            }
            MountKind::Ssh => {
                return Err(
                    "RUN --mount=type=ssh is not supported: berth build forwards no SSH agent"
                        .into(),
                );
            }
        }
        if !m.target.is_empty() {
            prepared.targets.push(m.target.clone());
        }
    }
    Ok(prepared)
}

/// A bind source resolved to a host path that holds no symlink of the tree it is in.
struct Source {
    path: PathBuf,
    is_dir: bool,
}

/// Opens `rel` inside the tree at `root` (symlinks followed but kept inside it) and
/// returns the host path it is at.
fn resolve_in(root: &Path, rel: &str) -> Result<Source, String> {
    let root_fd = rustix::fs::open(
        root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", root.display()))?;
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let (fd, is_dir): (OwnedFd, bool) =
        match berth_store::open_dir_in_root(root_fd.as_fd(), Path::new(rel)) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                let file = berth_store::open_file_in_root(root_fd.as_fd(), Path::new(rel))
                    .map_err(|e| format!("{rel}: {e}"))?;
                (file.into(), false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("{rel}: not found"));
            }
            Err(e) => return Err(format!("{rel}: {e}")),
        };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("{rel}: {e}"))?;
    Ok(Source { path, is_dir })
}

/// Where a bind mount's source is on the host.
fn bind_source(
    engine: &mut Engine,
    context: &copy::Context,
    spec: &Spec,
    prepared: &mut Prepared,
    n: usize,
) -> Result<Source, String> {
    let source = spec.mount.source.as_deref().unwrap_or("/");
    match &spec.origin {
        Origin::Context if context.ignores_nothing() => resolve_in(context.root(), source),
        Origin::Context => {
            // What `.dockerignore` excludes must not show: a copy of the rest.
            let copied = prepared.staging.join(format!("context-{n}"));
            std::fs::create_dir(&copied)
                .map_err(|e| format!("create {}: {e}", copied.display()))?;
            let named = resolve_in(context.root(), source)?;
            fill_from(engine, context, None, source, &copied)?;
            match Path::new(source).file_name() {
                // A file lands under its name; a directory's content at the top.
                Some(name) if !named.is_dir => resolve_in(&copied, &name.to_string_lossy()),
                _ => resolve_in(&copied, "/"),
            }
        }
        Origin::Image(id, _) => {
            let root = prepared.image_root(engine, id, n)?;
            resolve_in(&root, source)
        }
    }
}

/// Fills `dest` with what `COPY [--from=image] source /` would copy.
fn fill_from(
    engine: &mut Engine,
    context: &copy::Context,
    image: Option<&(Digest, String)>,
    source: &str,
    dest: &Path,
) -> Result<(), String> {
    let request = copy::CopyRequest {
        sources: vec![source.trim_start_matches('/').to_string()]
            .into_iter()
            .map(|s| if s.is_empty() { ".".into() } else { s })
            .collect(),
        heredocs: Vec::new(),
        dest: "/".into(),
        workdir: "/".into(),
        chown: None,
        chmod: None,
        from: image.cloned(),
        extract_archives: false,
    };
    let plan = copy::plan(engine, context, None, &request)?;
    let mut tar = crate::tempfile_in(dest).map_err(|e| e.to_string())?;
    plan.write(&mut tar)?;
    use std::io::Seek;
    tar.rewind().map_err(|e| e.to_string())?;
    berth_store::unpack_layer(std::io::BufReader::new(tar), dest)
        .map_err(|e| format!("copy into {}: {e}", dest.display()))?;
    Ok(())
}

impl Prepared {
    /// An image's filesystem as a host directory: its one layer, or its layers as a
    /// read-only overlay attached under the staging directory.
    fn image_root(
        &mut self,
        engine: &mut Engine,
        id: &Digest,
        n: usize,
    ) -> Result<PathBuf, String> {
        let store = engine.store();
        let record = store.resolve(&id.to_string()).map_err(|e| e.to_string())?;
        let chains = store
            .image(record)
            .and_then(|i| i.chain_ids())
            .map_err(|e| e.to_string())?;
        let lowers: Vec<PathBuf> = chains.iter().rev().map(|c| store.layer_dir(c)).collect();
        match lowers.as_slice() {
            [] => {
                let empty = self.staging.join(format!("empty-{n}"));
                std::fs::create_dir(&empty)
                    .map_err(|e| format!("create {}: {e}", empty.display()))?;
                Ok(empty)
            }
            [one] => Ok(one.clone()),
            many => {
                let fd = berth_runtime::view::overlay_view(many, None)
                    .map_err(|e| format!("mount the image's layers: {e}"))?;
                self.attach(fd, &format!("image-{n}"))
            }
        }
    }

    /// Attaches the detached mount `fd` at `<staging>/<name>`.
    fn attach(&mut self, fd: OwnedFd, name: &str) -> Result<PathBuf, String> {
        let at = self.staging.join(name);
        std::fs::create_dir(&at).map_err(|e| format!("create {}: {e}", at.display()))?;
        rustix::mount::move_mount(
            fd.as_fd(),
            "",
            rustix::fs::CWD,
            &at,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| format!("mount at {}: {e}", at.display()))?;
        self.attached.push(at.clone());
        Ok(at)
    }

    /// A bind mount with `rw`: the source under an overlay whose upper directory is thrown
    /// away with the step (a file: a copy).
    fn writable_copy(&mut self, source: &Source, n: usize) -> Result<PathBuf, String> {
        if !source.is_dir {
            let copy = self.staging.join(format!("rw-{n}"));
            std::fs::copy(&source.path, &copy)
                .map_err(|e| format!("copy {}: {e}", source.path.display()))?;
            return Ok(copy);
        }
        let upper = self.staging.join(format!("upper-{n}"));
        let work = self.staging.join(format!("work-{n}"));
        for dir in [&upper, &work] {
            std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let fd = berth_runtime::view::overlay_view(
            std::slice::from_ref(&source.path),
            Some((&upper, &work)),
        )
        .map_err(|e| format!("mount {} writable: {e}", source.path.display()))?;
        self.attach(fd, &format!("rw-{n}"))
    }

    /// A cache mount's directory, locked as its `sharing=` says; made (and filled from
    /// `from=`, if any) the first time.
    fn cache_dir(
        &mut self,
        engine: &mut Engine,
        context: &copy::Context,
        spec: &Spec,
        n: usize,
    ) -> Result<PathBuf, String> {
        let m = &spec.mount;
        let id = m.id.clone().unwrap_or_else(|| m.target.clone());
        let base = cache_mounts_dir(engine.root());
        std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
        let name = hex::encode(Sha256::digest(id.as_bytes()));
        let dir = base.join(&name);
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join(format!("{name}.lock")))
            .map_err(|e| format!("cache mount {id}: {e}"))?;
        let mut dir = dir;
        match m.sharing.as_deref() {
            Some("locked") => flock(&lock, rustix::fs::FlockOperation::LockExclusive)?,
            Some("private") => {
                if flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
                    // In use: this step gets a fresh one of its own.
                    dir = self.staging.join(format!("cache-{n}"));
                }
            }
            _ => flock(&lock, rustix::fs::FlockOperation::LockShared)?,
        }
        self._locks.push(lock);
        if !dir.exists() {
            // Made aside and renamed, so that a crash leaves no half-filled cache; named after
            // this step's staging directory (`PID-N`), as concurrent stages of one build may
            // both be making it.
            let step = self
                .staging
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let fresh = base.join(format!("{name}.new-{step}"));
            let _ = std::fs::remove_dir_all(&fresh);
            std::fs::create_dir(&fresh).map_err(|e| format!("create {}: {e}", fresh.display()))?;
            let from = match &spec.origin {
                Origin::Image(id, name) => Some((id.clone(), name.clone())),
                Origin::Context => None,
            };
            if let Some(from) = &from {
                fill_from(
                    engine,
                    context,
                    Some(from),
                    m.source.as_deref().unwrap_or("/"),
                    &fresh,
                )?;
            }
            std::fs::set_permissions(
                &fresh,
                std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
            )
            .map_err(|e| format!("chmod {}: {e}", fresh.display()))?;
            std::os::unix::fs::chown(&fresh, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                .map_err(|e| format!("chown {}: {e}", fresh.display()))?;
            if let Err(e) = std::fs::rename(&fresh, &dir) {
                // Another build made it first (ENOTEMPTY): use that one.
                let _ = std::fs::remove_dir_all(&fresh);
                if !dir.is_dir() {
                    return Err(format!("create {}: {e}", dir.display()));
                }
            }
        }
        Ok(dir)
    }

    /// A secret as a file on a tmpfs attached under the staging directory (made once per
    /// step), owned and moded as the mount says (0400 by root by default).
    fn secret_file(&mut self, m: &RunMount, value: &[u8], n: usize) -> Result<PathBuf, String> {
        let dir = self.staging.join("secrets");
        if !self.attached.contains(&dir) {
            let fd = berth_runtime::view::device_view("tmpfs", "tmpfs", "size=16m,mode=0700")
                .map_err(|e| format!("mount a tmpfs for secrets: {e}"))?;
            self.attach(fd, "secrets")?;
        }
        let path = dir.join(n.to_string());
        std::fs::write(&path, value).map_err(|e| format!("write the secret: {e}"))?;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(m.mode.unwrap_or(0o400)),
        )
        .map_err(|e| format!("chmod the secret: {e}"))?;
        std::os::unix::fs::chown(&path, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
            .map_err(|e| format!("chown the secret: {e}"))?;
        Ok(path)
    }
}

fn flock(file: &std::fs::File, op: rustix::fs::FlockOperation) -> Result<(), String> {
    rustix::fs::flock(file, op).map_err(|e| format!("lock a cache mount: {e}"))
}

/// `builder prune`: removes the cache mounts no build is using; returns the bytes freed.
pub fn prune_cache_mounts(root: &Path) -> Result<u64, std::io::Error> {
    let base = cache_mounts_dir(root);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") || !entry.path().is_dir() {
            continue;
        }
        let name = name.split(".new-").next().unwrap_or(&name).to_string();
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join(format!("{name}.lock")))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        freed += berth_engine::volumes::dir_size(&entry.path());
        std::fs::remove_dir_all(entry.path())?;
    }
    Ok(freed)
}
