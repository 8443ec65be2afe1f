//! What a container holds: its filesystem for `cp` (in and out), `diff`, `export`, and
//! `commit`, which makes its changes an image.
//!
//! Paths inside a container are always resolved against a directory fd that stands for its
//! root (`openat2(RESOLVE_IN_ROOT)` in `berth_store::pack`), so a symlink in the container,
//! even one swapped in while `cp` runs, never leads outside it:
//! - a running container is reached through its init's root (`/proc/<pid>/root`, the pid
//!   checked through a pidfd), so `cp` sees what its processes see, mounts included;
//! - a stopped one gets its overlay mounted detached, visible only through the fd
//!   ([`berth_runtime::view`]), read-only unless `cp` writes into it; a writer holds the
//!   container's lock meanwhile, so that it cannot start on the same upper directory.
//!
//! `diff` and `commit` read the container's upper directory itself. The mount targets the
//! runtime creates there ([`PLACEHOLDERS`]) are not changes: Docker keeps them in an "init"
//! layer instead.

use std::{
    io::Write,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use berth_reference::{Digest, Reference};
use berth_store::{Change, CommitOptions, ImageRecord, RunConfig};
use rustix::fs::{Mode, OFlags};

use crate::{
    ContainerRecord, Engine, EngineError, io_err,
    lifecycle::{self, ContainerLock},
};

/// Files the runtime creates in a container's upper directory as targets of its bind mounts.
pub const PLACEHOLDERS: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// A container's changes to its image ([`Engine::changes`]).
pub struct Changes {
    name: String,
    upper: PathBuf,
    lowers: Vec<PathBuf>,
}

impl Changes {
    /// Writes them to `out` as a layer tar: what `commit` stores, less the runtime's mount
    /// targets ([`PLACEHOLDERS`]).
    pub fn write(&self, out: &mut dyn std::io::Write) -> Result<(), EngineError> {
        berth_store::write_overlay_layer(&self.upper, &self.lowers, PLACEHOLDERS, out)
            .map_err(|e| EngineError::Invalid(format!("read the changes of {}: {e}", self.name)))?;
        Ok(())
    }

    /// Removes from the container's upper directory the targets of mounts it had
    /// (`targets`, absolute) and their parents where the image has none of them and they are
    /// still empty: the mount points the runtime made, which are not the command's changes
    /// (as BuildKit drops the stubs of `RUN --mount`).
    pub fn remove_mount_stubs(&self, targets: &[String]) -> Result<(), EngineError> {
        if targets.is_empty() {
            return Ok(());
        }
        let upper = &self.upper;
        let lowers: Vec<OwnedFd> = self
            .lowers
            .iter()
            .filter_map(|l| {
                rustix::fs::open(l, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).ok()
            })
            .collect();
        let mut stubs = std::collections::BTreeSet::new();
        for target in targets {
            let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
            for n in 1..=parts.len() {
                let rel = parts[..n].join("/");
                let in_image = lowers
                    .iter()
                    .any(|l| berth_store::stat_in_root(l.as_fd(), Path::new(&rel), false).is_ok());
                if !in_image {
                    stubs.insert(rel);
                }
            }
        }
        let upper_fd = rustix::fs::open(upper, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| io_err(format!("open {}", upper.display()))(e.into()))?;
        // Deepest first, so that a parent is empty once its stubs are gone.
        let mut stubs: Vec<String> = stubs.into_iter().collect();
        stubs.sort_by_key(|s| std::cmp::Reverse(s.matches('/').count()));
        for rel in stubs {
            let (parent, name) = match rel.rsplit_once('/') {
                Some((p, n)) => (p, n),
                None => ("", rel.as_str()),
            };
            let parent = if parent.is_empty() { "." } else { parent };
            let Ok(dir) = berth_store::open_dir_in_root(upper_fd.as_fd(), Path::new(parent)) else {
                continue;
            };
            let Ok(st) = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            // A non-empty directory stays (ENOTEMPTY): the command wrote there.
            let _ = match kind {
                rustix::fs::FileType::Directory => {
                    rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::REMOVEDIR)
                }
                rustix::fs::FileType::RegularFile if st.st_size == 0 => {
                    rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                }
                _ => Ok(()),
            };
        }
        Ok(())
    }
}

/// A container's root filesystem, open for `cp`.
pub struct ContainerFs {
    root: OwnedFd,
    _lock: Option<ContainerLock>,
}

impl ContainerFs {
    /// The directory fd that stands for the container's `/`.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// What `cp` and the Engine API say of a path in a container (Docker's
/// `ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPathStat {
    /// Its last component as Docker names it: `.` for `DIR/.`, `/` for the root.
    pub name: String,
    /// Type, permissions, size, modification time, and a symlink's text.
    pub stat: berth_store::PathStat,
    /// A symlink's target as a path in the container (its text joined to the link's
    /// directory when relative); empty for anything else.
    pub link_target: String,
}

/// A path of a container, open to be written as a tar stream ([`Engine::archive_path`]).
pub struct PathArchive {
    fs: ContainerFs,
    path: PathBuf,
    name: PathBuf,
    /// What the path is.
    pub stat: ContainerPathStat,
}

impl PathArchive {
    /// Writes the tar stream; returns its size.
    pub fn write(&self, out: impl Write) -> Result<u64, EngineError> {
        let opts = berth_store::PackOptions {
            name: self.name.clone(),
            follow_top: false,
            owner: None,
            owner_names: true,
        };
        berth_store::pack_path(self.fs.root(), &self.path, &opts, out)
            .map(|stats| stats.bytes)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

fn container_path_stat(
    fs: &ContainerFs,
    key: &str,
    path: &str,
) -> Result<ContainerPathStat, EngineError> {
    let stat = berth_store::stat_in_root(fs.root(), Path::new(path), false)
        .map_err(|e| path_error(e, key, path))?;
    let absolute = Path::new("/").join(path);
    let name = archive_name(path);
    let link_target = match &stat.link_target {
        Some(text) => {
            let parent = absolute.parent().unwrap_or(Path::new("/"));
            lexical_clean(&parent.join(text))
        }
        None => String::new(),
    };
    Ok(ContainerPathStat {
        name,
        stat,
        link_target,
    })
}

/// The name dockerd gives `path` in a stat and as the top entry of its archive: its last
/// component, `.` for `DIR/.` and `/` for the root.
pub fn archive_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".to_string();
    }
    match Path::new("/").join(path).file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => "/".to_string(),
    }
}

/// `path` without `.` and `..` components, resolved by its text alone (`..` at the root
/// stays at the root).
fn lexical_clean(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(c) => parts.push(c),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let joined: PathBuf = parts.iter().collect();
    format!("/{}", joined.display())
}

/// A path a container's processes may write although its root is read-only: on one of its
/// writable volumes or bind mounts.
fn on_writable_mount(rec: &ContainerRecord, path: &str) -> bool {
    let path = Path::new(path);
    rec.mounts
        .iter()
        .any(|m| m.rw && path.starts_with(&m.destination))
}

fn path_error(e: std::io::Error, key: &str, path: &str) -> EngineError {
    if e.kind() == std::io::ErrorKind::NotFound {
        EngineError::NoSuchPath {
            container: key.to_string(),
            path: path.to_string(),
        }
    } else {
        EngineError::Io {
            what: format!("{key}:{path}"),
            source: e,
        }
    }
}

/// What `commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `-a`.
    pub author: Option<String>,
    /// `-m`.
    pub comment: Option<String>,
    /// The new image's name.
    pub tag: Option<Reference>,
    /// `--pause` (Docker's default): freeze a running container while its layer is read.
    pub pause: bool,
}

impl Engine {
    /// The container's filesystem as its processes see it when it runs; its overlay when it
    /// does not (writable with `writable`).
    pub fn open_fs(
        &mut self,
        key: &str,
        writable: bool,
    ) -> Result<(ContainerRecord, ContainerFs), EngineError> {
        let rec = self.container(key)?;
        if rec.state.running
            && let Some(pidfd) = lifecycle::open_init(&rec)?
        {
            let path = format!("/proc/{}/root", rec.state.pid);
            let root = rustix::fs::open(
                &path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(format!("open {path}"))(e.into()))?;
            // Alive after the open: the pid was still the container's init when opened.
            if !lifecycle::has_exited(&pidfd) {
                return Ok((rec, ContainerFs { root, _lock: None }));
            }
        }
        let (lock, upper) = if writable {
            let lock = self
                .try_lock(&rec.id)?
                .ok_or_else(|| EngineError::Invalid(format!("container {} is starting", rec.id)))?;
            (Some(lock), true)
        } else {
            (None, false)
        };
        let root = self.overlay_view(&rec, upper)?;
        Ok((rec, ContainerFs { root, _lock: lock }))
    }

    /// The container's overlay, mounted detached: with its upper directory to write to, or
    /// read-only with the upper directory as the top layer.
    fn overlay_view(&self, rec: &ContainerRecord, writable: bool) -> Result<OwnedFd, EngineError> {
        let data = &rec.graph_driver.data;
        let mut lower: Vec<PathBuf> = data.lower_dir.split(':').map(PathBuf::from).collect();
        let view = if writable {
            berth_runtime::view::overlay_view(
                &lower,
                Some((Path::new(&data.upper_dir), Path::new(&data.work_dir))),
            )
        } else {
            lower.insert(0, PathBuf::from(&data.upper_dir));
            berth_runtime::view::overlay_view(&lower, None)
        };
        view.map_err(|e| io_err(format!("mount the filesystem of container {}", rec.id))(e))
    }

    /// `cp`'s (and the Engine API's `archive`) stat of `path` in the container, its last
    /// component not followed.
    pub fn stat_path(&mut self, key: &str, path: &str) -> Result<ContainerPathStat, EngineError> {
        let (_rec, fs) = self.open_fs(key, false)?;
        container_path_stat(&fs, key, path)
    }

    /// `path` in the container, ready to be written as a tar stream as dockerd's `archive`
    /// writes it: the top entry named after the path's last component (`.` for `DIR/.`,
    /// whose entries are then `./NAME`).
    pub fn archive_path(&mut self, key: &str, path: &str) -> Result<PathArchive, EngineError> {
        let (_rec, fs) = self.open_fs(key, false)?;
        let stat = container_path_stat(&fs, key, path)?;
        Ok(PathArchive {
            fs,
            path: PathBuf::from(path),
            name: PathBuf::from(&stat.name),
            stat,
        })
    }

    /// Extracts the tar stream `tar` into the directory `path` of the container (`cp` into
    /// a container, the Engine API's `PUT archive`). Entries belong to the container's root
    /// unless `keep_owners` (`cp -a`); nothing is written outside the container's root.
    pub fn extract_archive(
        &mut self,
        key: &str,
        path: &str,
        tar: impl std::io::Read + Send,
        keep_owners: bool,
    ) -> Result<(), EngineError> {
        let (rec, fs) = self.open_fs(key, true)?;
        let stat = berth_store::stat_in_root(fs.root(), Path::new(path), true)
            .map_err(|e| path_error(e, key, path))?;
        if stat.kind != berth_store::PathKind::Dir {
            return Err(EngineError::NotADirectory);
        }
        if rec.host_config.readonly_rootfs && !on_writable_mount(&rec, path) {
            return Err(EngineError::ReadOnlyRootfs);
        }
        let dir = berth_store::open_dir_in_root(fs.root(), Path::new(path))
            .map_err(|e| path_error(e, key, path))?;
        let options = berth_store::UnpackOptions {
            whiteouts: false,
            owner: (!keep_owners).then_some((0, 0)),
        };
        berth_store::unpack_into(tar, dir.as_fd(), Path::new(path), &options)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// `diff`: the container's changes to its image, sorted by path.
    pub fn diff(&mut self, key: &str) -> Result<Vec<Change>, EngineError> {
        let rec = self.container(key)?;
        let (upper, lower) = layers(&rec);
        berth_store::overlay_changes(&upper, &lower, PLACEHOLDERS)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// `export`: the container's whole filesystem (its image and its changes, without what
    /// is mounted into it) as a tar stream.
    pub fn export(&mut self, key: &str, out: impl Write) -> Result<(), EngineError> {
        let rec = self.container(key)?;
        let root = self.overlay_view(&rec, false)?;
        berth_store::pack_path(
            root.as_fd(),
            Path::new("/"),
            &berth_store::PackOptions {
                name: PathBuf::new(),
                follow_top: false,
                owner: None,
                owner_names: true,
            },
            out,
        )
        .map_err(|e| EngineError::Invalid(format!("export container {}: {e}", rec.id)))?;
        Ok(())
    }

    /// The container's changes to its image, to write as a layer tar (a build step's layer)
    /// without holding the engine.
    pub fn changes(&mut self, key: &str) -> Result<Changes, EngineError> {
        let rec = self.container(key)?;
        let (upper, lowers) = layers(&rec);
        Ok(Changes {
            name: rec.name.clone(),
            upper,
            lowers,
        })
    }

    /// `commit`: a new image of the container's image plus its changes, with the container's
    /// settings as the image's defaults, changed by `change` (`--change`).
    pub fn commit(
        &mut self,
        key: &str,
        request: CommitRequest,
        change: impl FnOnce(&mut RunConfig) -> Result<(), String>,
    ) -> Result<ImageRecord, EngineError> {
        let rec = self.container(key)?;
        let parent = Digest::parse(&rec.image)
            .map_err(|e| EngineError::Invalid(format!("container image {}: {e}", rec.image)))?;
        let image = self.store.resolve(&rec.image)?;
        let image = self.store.image(image)?;
        let mut config = image.config.config.clone().unwrap_or_default();
        let c = &rec.config;
        config.user = Some(c.user.clone()).filter(|u| !u.is_empty());
        config.env = Some(c.env.clone());
        config.cmd = c.cmd.clone();
        config.entrypoint = c.entrypoint.clone();
        config.working_dir = Some(c.working_dir.clone()).filter(|w| !w.is_empty());
        config.labels = Some(c.labels.clone()).filter(|l| !l.is_empty());
        config.stop_signal = c.stop_signal.clone();
        change(&mut config).map_err(EngineError::Invalid)?;

        let freeze = request.pause && rec.state.running && !rec.state.paused;
        let cgroup = if freeze {
            let cgroup = berth_runtime::cgroups::Cgroup::open(&lifecycle::cgroup_path(&rec.id))
                .map_err(berth_runtime::RuntimeError::from)?;
            cgroup.freeze().map_err(berth_runtime::RuntimeError::from)?;
            Some(cgroup)
        } else {
            None
        };
        let changes = self.changes(key)?;
        let comment = request.comment.clone().unwrap_or_default();
        let opts = CommitOptions {
            config,
            author: request.author,
            comment: request.comment,
            created_by: Some(std::iter::once(&rec.path).chain(&rec.args).fold(
                String::new(),
                |mut s, a| {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    s.push_str(a);
                    s
                },
            )),
            container_id: Some(rec.id.clone()),
            tag: request.tag,
        };
        let store = &mut self.store;
        // A layer cut short by a failed packer is an error at its end, never an image.
        let committed = berth_store::with_written_layer(
            |out| changes.write(out).map_err(|e| e.to_string()),
            |layer| store.commit(&parent, layer, opts),
        )
        .map_err(io_err("make a pipe for the layer"));
        if let Some(cgroup) = cgroup {
            let _ = cgroup.thaw();
        }
        let image = committed??;
        let image_ref = image
            .tags
            .first()
            .map(|t| t.familiar_string())
            .unwrap_or_default();
        self.container_event(
            &rec,
            "commit",
            &[
                ("comment", comment),
                ("imageID", image.id.to_string()),
                ("imageRef", image_ref),
            ],
        );
        Ok(image)
    }
}

/// A container's upper directory and its image's layers (top-most first).
fn layers(rec: &ContainerRecord) -> (PathBuf, Vec<PathBuf>) {
    let data = &rec.graph_driver.data;
    (
        PathBuf::from(&data.upper_dir),
        data.lower_dir.split(':').map(PathBuf::from).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_and_link_targets_as_dockerd_gives_them() {
        assert_eq!(archive_name("/tmp/dir/."), ".");
        assert_eq!(archive_name("/tmp/dir/"), "dir");
        assert_eq!(archive_name("tmp/a.txt"), "a.txt");
        assert_eq!(archive_name("/"), "/");
        assert_eq!(
            lexical_clean(Path::new("/tmp/dir/./a.txt")),
            "/tmp/dir/a.txt"
        );
        assert_eq!(lexical_clean(Path::new("/tmp/dir/../../../etc")), "/etc");
    }
}
