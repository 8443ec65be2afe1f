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
        Ok(committed??)
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
