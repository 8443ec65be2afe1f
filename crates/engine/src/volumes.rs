//! Named volumes, as Docker's `local` driver keeps them.
//!
//! A volume's data is the directory `<root>/volumes/<name>/_data` (Docker's `Mountpoint`);
//! its metadata (driver, labels, `--opt` options, creation time) is a row of the `volumes`
//! table in `containers.db`. That table lives beside the container records rather than in
//! a `volumes.db` of its own because "in use" is a fact about container records: with both
//! in one file, `volume rm` checks that no container mounts the volume and deletes its row in
//! one write transaction, and recording a container checks that its volumes exist in the
//! transaction that inserts it (`Db::insert`). Two files would need a lock of berth's own
//! around both for the same guarantee.
//!
//! **The row is the truth.** A volume exists when its row does; a directory under
//! `volumes/` without a row is debris:
//! - create (under the `volumes/` lock): a row of that name means the volume exists and is
//!   returned (its `_data` made again if it went missing); otherwise a directory of that
//!   name is an orphan and is moved aside, then the directories are made and synced, then
//!   the row is inserted and synced. A crash before the insert leaves an orphan directory,
//!   which the next create of the name, or `volume prune`, removes.
//! - remove: the row goes first (in the transaction that checks for users), then, still
//!   under the lock, the directory is renamed to `volumes/.removing-<random>`, and it is
//!   deleted after the lock is released, so deleting a large volume holds up nobody. A crash
//!   leaves an orphan `volumes/<name>` or a `.removing-*` directory; prune removes both.
//!
//! **Concurrency.** An exclusive `flock` on the `volumes/` directory itself orders the
//! short metadata steps of create, remove and prune (a row, a `mkdir`, a rename) between
//! processes, so two creates of one name both succeed with one volume, and a create never
//! takes for an orphan the directory another process is about to register. A remover holds
//! a `flock` on its `.removing-*` directory while it deletes it, so prune's sweep leaves that
//! one alone. Lock order: `volumes/` -> SQLite; containers are reconciled (their own locks)
//! before the `volumes/` lock is taken, never under it.
//!
//! Volumes with options (`type`, `device`, `o`) must be mounted only inside a container's
//! own mount namespace (as every container mount is), so that on the host `_data` stays an
//! empty directory: removal deletes whatever the host sees there.

use std::{
    collections::{BTreeMap, HashSet},
    fs, io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use berth_store::{Filters, events::Event};

use crate::{
    Engine, EngineError,
    db::{VolumeDeletion, VolumeRow},
    io_err, new_id,
};

/// The label Docker puts on anonymous volumes (those created without a name); `volume
/// prune` without `--all` removes only volumes that have it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The one volume driver berth has.
pub const LOCAL_DRIVER: &str = "local";

/// The options Docker's `local` driver takes (`size` needs filesystem quotas, which berth
/// does not set up).
const LOCAL_OPTIONS: [&str; 3] = ["type", "device", "o"];

/// The data directory inside a volume's directory.
const DATA_DIR: &str = "_data";

/// Directories being deleted: a name no volume can have (names start alphanumeric).
const TRASH_PREFIX: &str = ".removing-";

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct VolumeOptions {
    /// The name; `None` (or empty) makes an anonymous volume with a random 64-hex name.
    pub name: Option<String>,
    /// `-d`: the driver; empty means `local`, the only one.
    pub driver: String,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-o`/`--opt`: the driver's options (`type`, `device`, `o`).
    pub options: BTreeMap<String, String>,
    /// Mark the volume anonymous (Docker's label) even though it is named; a volume without
    /// a name always is.
    pub anonymous: bool,
}

/// Docker's `docker volume inspect` document.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// RFC 3339, seconds, UTC.
    pub created_at: String,
    /// Always `local`.
    pub driver: String,
    /// Its labels, anonymous volumes' [`ANONYMOUS_LABEL`] included.
    pub labels: BTreeMap<String, String>,
    /// Where its data is on the host: `<root>/volumes/<name>/_data`.
    pub mountpoint: String,
    /// Its name.
    pub name: String,
    /// The driver's options it was created with.
    pub options: BTreeMap<String, String>,
    /// Always `local`.
    pub scope: String,
}

impl Volume {
    /// Whether the volume was created without a name (or marked so by its creator).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// The filters `volume prune` takes: `label`, `label!`, and `all` (every unused volume, not
/// only anonymous ones: the docker CLI's `--all`).
pub const VOLUME_PRUNE_FILTERS: &[&str] = &["label", "label!", "all"];

/// `all=` of a volume prune: one Go boolean.
fn prune_all(filters: &Filters) -> Result<bool, EngineError> {
    match filters.get("all") {
        [] => Ok(false),
        [one] => berth_store::go_bool(one).ok_or_else(|| {
            EngineError::Invalid(format!(
                "invalid filter 'all': strconv.ParseBool: parsing {one:?}: invalid syntax"
            ))
        }),
        many => Err(EngineError::Invalid(format!(
            "invalid filter 'all=[{}]': only one value is expected",
            many.join(" ")
        ))),
    }
}

/// The filters `volume ls` takes.
pub const VOLUME_FILTERS: &[&str] = &["dangling", "name", "driver", "label"];

/// Docker's rule for a local volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), EngineError> {
    if name.len() == 1 {
        return Err(EngineError::Invalid(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        ));
    }
    let bytes = name.as_bytes();
    let valid = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(EngineError::Invalid(format!(
            "{name:?} includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path"
        )));
    }
    Ok(())
}

/// Docker's checks of the `local` driver's options: known keys only, and `type` and
/// `device` go together (`o` needs both).
pub fn validate_options(options: &BTreeMap<String, String>) -> Result<(), EngineError> {
    if let Some(key) = options
        .keys()
        .find(|k| !LOCAL_OPTIONS.contains(&k.as_str()))
    {
        return Err(EngineError::Invalid(format!("invalid option key: {key:?}")));
    }
    let needs: [(&str, &[&str]); 3] = [
        ("device", &["type"]),
        ("type", &["device"]),
        ("o", &["device", "type"]),
    ];
    for (key, required) in needs {
        if !options.contains_key(key) {
            continue;
        }
        if let Some(missing) = required.iter().find(|r| !options.contains_key(**r)) {
            return Err(EngineError::Invalid(format!(
                "missing required option: {missing:?}"
            )));
        }
    }
    Ok(())
}

/// A directory moved out of the way under a `.removing-*` name, locked so that nobody
/// else's sweep deletes it at the same time; deleted by [`Trash::remove`].
struct Trash {
    path: PathBuf,
    _lock: fs::File,
}

impl Trash {
    /// Deletes the directory. A failure is only logged: the volume is already gone, and
    /// the next prune tries again.
    fn remove(self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(
                "removing {}: {e} (volume prune removes it later)",
                self.path.display()
            );
        }
    }
}

impl Engine {
    /// `<root>/volumes`: one directory per volume.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// `<root>/volumes/<name>/_data`: where a volume's data is (Docker's `Mountpoint`).
    pub fn volume_mountpoint(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join(DATA_DIR)
    }

    /// Creates a volume, or returns the one of that name: Docker's `volume create`, which
    /// is also what a container's `-v name:/path` needs (call it before recording the
    /// container, which must then name the volume in its `Mounts`). An existing volume's
    /// labels are left as they are (Docker); other options than it has are an error, since
    /// the caller would not get the volume it asked for.
    pub fn volume_create(&mut self, opts: &VolumeOptions) -> Result<Volume, EngineError> {
        let driver = if opts.driver.is_empty() {
            LOCAL_DRIVER
        } else {
            opts.driver.as_str()
        };
        if driver != LOCAL_DRIVER {
            return Err(EngineError::NoSuchVolumeDriver(driver.to_string()));
        }
        let (name, anonymous) = match opts.name.as_deref() {
            None | Some("") => (new_id()?, true),
            Some(name) => (name.to_string(), opts.anonymous),
        };
        validate_name(&name)?;
        validate_options(&opts.options)?;
        let mut labels = opts.labels.clone();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }

        let lock = self.lock_volumes()?;
        if let Some(row) = self.db.volume(&name)? {
            if row.options != opts.options {
                return Err(EngineError::Invalid(format!(
                    "volume {name:?} already exists with other options ({}): remove it first or give the same --opt values",
                    format_options(&row.options)
                )));
            }
            // The row is the truth: a data directory that went missing is made again.
            let data = self.volume_mountpoint(&name);
            if !data.exists() {
                self.make_volume_dir(&name)?;
            }
            return Ok(self.volume_doc(row));
        }
        let dir = self.volumes_dir().join(&name);
        let orphan = match fs::symlink_metadata(&dir) {
            Ok(_) => Some(self.move_to_trash(&dir)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("stat {}", dir.display()))(e)),
        };
        let row = VolumeRow {
            name: name.clone(),
            driver: LOCAL_DRIVER.into(),
            created: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            labels,
            options: opts.options.clone(),
        };
        let created = self
            .make_volume_dir(&name)
            .and_then(|()| self.db.insert_volume(&row));
        if let Err(e) = created {
            let _ = fs::remove_dir_all(&dir);
            drop(lock);
            if let Some(orphan) = orphan {
                orphan.remove();
            }
            return Err(e);
        }
        drop(lock);
        if let Some(orphan) = orphan {
            orphan.remove();
        }
        self.store
            .record_event(Event::now("volume", "create", &name).with("driver", LOCAL_DRIVER));
        Ok(self.volume_doc(row))
    }

    /// The volume called `name`.
    pub fn volume(&self, name: &str) -> Result<Volume, EngineError> {
        self.db
            .volume(name)?
            .map(|row| self.volume_doc(row))
            .ok_or_else(|| EngineError::NoSuchVolume(name.to_string()))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>, EngineError> {
        Ok(self
            .db
            .volumes()?
            .into_iter()
            .map(|row| self.volume_doc(row))
            .collect())
    }

    /// `volume ls`: the volumes that pass `filters` (keys of [`VOLUME_FILTERS`]; `name` is
    /// a regular expression, as Docker's, or an exact name).
    pub fn volume_list(
        &mut self,
        filters: &berth_store::Filters,
    ) -> Result<Vec<Volume>, EngineError> {
        let dangling = filters
            .bool("dangling")
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let names = filters.get("name");
        let patterns: Vec<Option<regex::Regex>> =
            names.iter().map(|p| regex::Regex::new(p).ok()).collect();
        let drivers = filters.get("driver");
        let mut out = Vec::new();
        for v in self.volumes()? {
            if !drivers.is_empty() && !drivers.contains(&v.driver) {
                continue;
            }
            if !names.is_empty()
                && !names.iter().zip(&patterns).any(|(exact, pattern)| {
                    *exact == v.name || pattern.as_ref().is_some_and(|re| re.is_match(&v.name))
                })
            {
                continue;
            }
            if !filters.labels_match(Some(&v.labels)) {
                continue;
            }
            if let Some(want) = dangling
                && self.volume_users(&v.name)?.is_empty() != want
            {
                continue;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The IDs of the containers, in any state, that mount the volume `name`, oldest first.
    /// Each is checked as [`Engine::container`] does, so a `--rm` container whose monitor
    /// died is removed rather than counted.
    pub fn volume_users(&mut self, name: &str) -> Result<Vec<String>, EngineError> {
        let mut users = Vec::new();
        for id in self.db.volume_users(name)? {
            let Some(rec) = self.db.get(&id)? else {
                continue;
            };
            if self.reconcile(rec)?.is_some() {
                users.push(id);
            }
        }
        Ok(users)
    }

    /// Removes a volume and its data: Docker's `volume rm`. A volume that a container
    /// mounts is refused even with `force` (Docker); `force` only makes a missing volume
    /// no error.
    pub fn volume_remove(&mut self, name: &str, force: bool) -> Result<(), EngineError> {
        // Reconciled before the lock (lock order); the transaction below checks again.
        self.volume_users(name)?;
        let lock = self.lock_volumes()?;
        match self.db.delete_volume_if_unused(name)? {
            VolumeDeletion::Deleted => {}
            VolumeDeletion::Missing if force => return Ok(()),
            VolumeDeletion::Missing => return Err(EngineError::NoSuchVolume(name.to_string())),
            VolumeDeletion::InUse(users) => {
                return Err(EngineError::VolumeInUse {
                    name: name.to_string(),
                    users,
                });
            }
        }
        let trash = self.trash_volume_dir(name);
        drop(lock);
        if let Some(trash) = trash {
            trash.remove();
        }
        self.store
            .record_event(Event::now("volume", "destroy", name).with("driver", LOCAL_DRIVER));
        Ok(())
    }

    /// Removes the volumes no container uses: Docker's `volume prune`. Without `all` only
    /// anonymous ones (Docker 23 and later); volumes with driver options are never pruned
    /// (their data is not under `_data`, Docker). Returns the names removed, by name, and
    /// the bytes their data took. Also removes what crashed creates and removes left under
    /// `volumes/`.
    pub fn volume_prune(&mut self, filters: &Filters) -> Result<(Vec<String>, u64), EngineError> {
        let all = prune_all(filters)?;
        // Containers whose monitor died are found out first, outside the volumes lock.
        self.containers()?;
        let lock = self.lock_volumes()?;
        let mut removed = Vec::new();
        for row in self.db.volumes()? {
            let candidate = row.driver == LOCAL_DRIVER
                && row.options.is_empty()
                && (all || row.labels.contains_key(ANONYMOUS_LABEL))
                && filters.labels_match(Some(&row.labels));
            if !candidate {
                continue;
            }
            // In use since the reconciliation, or removed by another process: skipped.
            if self.db.delete_volume_if_unused(&row.name)? == VolumeDeletion::Deleted {
                let trash = self.trash_volume_dir(&row.name);
                removed.push((row.name, trash));
            }
        }
        let debris = self.sweep_volumes_dir()?;
        drop(lock);
        let mut names = Vec::new();
        let mut reclaimed = 0;
        for (name, trash) in removed {
            if let Some(trash) = trash {
                reclaimed += dir_size(&trash.path.join(DATA_DIR));
                trash.remove();
            }
            self.store
                .record_event(Event::now("volume", "destroy", &name).with("driver", LOCAL_DRIVER));
            names.push(name);
        }
        debris.into_iter().for_each(Trash::remove);
        Ok((names, reclaimed))
    }

    fn volume_doc(&self, row: VolumeRow) -> Volume {
        Volume {
            created_at: row.created,
            driver: row.driver,
            labels: row.labels,
            mountpoint: self.volume_mountpoint(&row.name).display().to_string(),
            options: row.options,
            scope: "local".into(),
            name: row.name,
        }
    }

    /// Takes the exclusive lock on `volumes/` (made if need be) that orders the metadata
    /// steps of create, remove and prune between processes; released when the file drops.
    fn lock_volumes(&self) -> Result<fs::File, EngineError> {
        let dir = self.volumes_dir();
        match fs::DirBuilder::new().mode(0o701).create(&dir) {
            Ok(()) => {
                // Docker's mode: others may pass through to a mount point, not list names.
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o701))
                    .map_err(io_err(format!("chmod {}", dir.display())))?;
                sync_dir(&self.root)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("create {}", dir.display()))(e)),
        }
        let file = fs::File::open(&dir).map_err(io_err(format!("open {}", dir.display())))?;
        file.lock()
            .map_err(io_err(format!("lock {}", dir.display())))?;
        Ok(file)
    }

    /// Makes `volumes/<name>/_data` (Docker's modes) and syncs it to disk, so that the row
    /// inserted next never names a directory a power cut lost.
    fn make_volume_dir(&self, name: &str) -> Result<(), EngineError> {
        let dir = self.volumes_dir().join(name);
        let data = dir.join(DATA_DIR);
        for (path, mode) in [(&dir, 0o701), (&data, 0o755)] {
            match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(format!("create {}", path.display()))(e)),
            }
            // Exact modes whatever the umask: a container's non-root users need `_data`.
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
        sync_dir(&data)?;
        sync_dir(&dir)?;
        sync_dir(&self.volumes_dir())
    }

    /// Moves `dir` (under `volumes/`) to a fresh `.removing-*` name, locked. Called with the
    /// `volumes/` lock held.
    fn move_to_trash(&self, dir: &Path) -> Result<Trash, EngineError> {
        let file = fs::File::open(dir).map_err(io_err(format!("open {}", dir.display())))?;
        // Nobody else locks a directory that still has a volume's name (all of this runs
        // under the `volumes/` lock), so this does not wait.
        file.lock()
            .map_err(io_err(format!("lock {}", dir.display())))?;
        let trash = self
            .volumes_dir()
            .join(format!("{TRASH_PREFIX}{}", new_id()?));
        fs::rename(dir, &trash).map_err(io_err(format!("rename {}", dir.display())))?;
        Ok(Trash {
            path: trash,
            _lock: file,
        })
    }

    /// After a volume's row is deleted: its directory moved aside for deletion. A failure
    /// is logged, not returned: the volume is gone, and the directory left behind is an
    /// orphan that the next create of the name or prune removes.
    fn trash_volume_dir(&self, name: &str) -> Option<Trash> {
        let dir = self.volumes_dir().join(name);
        match self.move_to_trash(&dir) {
            Ok(trash) => Some(trash),
            Err(EngineError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("volume {name} removed, its directory left behind: {e}");
                None
            }
        }
    }

    /// Under the `volumes/` lock: every directory without a row (a create or remove that
    /// crashed) moved aside, and every `.removing-*` directory whose remover is gone
    /// (its lock is free), to be deleted once the lock is released.
    fn sweep_volumes_dir(&self) -> Result<Vec<Trash>, EngineError> {
        let dir = self.volumes_dir();
        let live: HashSet<String> = self.db.volumes()?.into_iter().map(|r| r.name).collect();
        let mut debris = Vec::new();
        let entries = fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(TRASH_PREFIX) {
                let Ok(file) = fs::File::open(&path) else {
                    continue;
                };
                if file.try_lock().is_ok() {
                    debris.push(Trash { path, _lock: file });
                }
            } else if !live.contains(&name) {
                match self.move_to_trash(&path) {
                    Ok(trash) => debris.push(trash),
                    Err(e) => tracing::warn!("leftover {}: {e}", path.display()),
                }
            }
        }
        Ok(debris)
    }
}

/// `k=v,k=v`, for an error message.
fn format_options(options: &BTreeMap<String, String>) -> String {
    if options.is_empty() {
        return "none".into();
    }
    options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("sync {}", dir.display())))
}

/// Bytes in a tree as Docker counts a volume's size: every file (symlinks as themselves,
/// never followed) once per inode, directories not at all (also the size of a build's cache
/// mount).
pub fn dir_size(root: &Path) -> u64 {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                total += walk(&entry.path(), seen);
            } else if meta.len() > 0 && seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
        total
    }
    walk(root, &mut HashSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerRecord, ContainerState, MountPoint};

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        (dir, engine)
    }

    fn named(name: &str) -> VolumeOptions {
        VolumeOptions {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// A stopped container whose record mounts `volumes`.
    fn fake_container(engine: &mut Engine, id: &str, volumes: &[&str]) -> Result<(), EngineError> {
        let rec = ContainerRecord {
            id: id.into(),
            created: jiff::Timestamp::now().to_string(),
            path: "true".into(),
            args: Vec::new(),
            state: ContainerState {
                status: "exited".into(),
                ..Default::default()
            },
            image: String::new(),
            name: format!("c-{id}"),
            config: Default::default(),
            host_config: Default::default(),
            graph_driver: Default::default(),
            log_path: String::new(),
            restart_count: 0,
            has_been_manually_stopped: false,
            mounts: volumes
                .iter()
                .map(|v| MountPoint {
                    kind: "volume".into(),
                    name: v.to_string(),
                    source: engine.volume_mountpoint(v).display().to_string(),
                    destination: format!("/{v}"),
                    driver: LOCAL_DRIVER.into(),
                    mode: "z".into(),
                    rw: true,
                    propagation: String::new(),
                })
                .collect(),
            network_settings: Default::default(),
        };
        engine.db.insert(&rec)
    }

    fn names(engine: &Engine) -> Vec<String> {
        engine
            .volumes()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "a1", "0_x", "my-vol.1", "A.-_"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(
            validate_name("x").unwrap_err().to_string(),
            "volume name is too short, names should be at least two alphanumeric characters"
        );
        assert_eq!(
            validate_name("x/y").unwrap_err().to_string(),
            "\"x/y\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path"
        );
        for bad in ["", "_ab", ".ab", "-ab", "a b", "a:b", "/abs", "é1"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn options_follow_the_local_driver() {
        let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        validate_options(&opts(&[])).unwrap();
        validate_options(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m"),
        ]))
        .unwrap();
        assert_eq!(
            validate_options(&opts(&[("x", "1")]))
                .unwrap_err()
                .to_string(),
            "invalid option key: \"x\""
        );
        assert_eq!(
            validate_options(&opts(&[("type", "tmpfs")]))
                .unwrap_err()
                .to_string(),
            "missing required option: \"device\""
        );
        assert_eq!(
            validate_options(&opts(&[("o", "ro"), ("device", "/dev/x")]))
                .unwrap_err()
                .to_string(),
            "missing required option: \"type\""
        );
    }

    #[test]
    fn create_is_idempotent_and_keeps_data() {
        let (_dir, mut engine) = engine();
        let mut opts = named("data");
        opts.labels.insert("a".into(), "1".into());
        let first = engine.volume_create(&opts).unwrap();
        assert_eq!(first.driver, "local");
        assert_eq!(first.scope, "local");
        assert!(!first.is_anonymous());
        assert_eq!(
            first.mountpoint,
            engine
                .root()
                .join("volumes/data/_data")
                .display()
                .to_string()
        );
        fs::write(Path::new(&first.mountpoint).join("f"), b"kept").unwrap();
        // Other labels: the existing volume, unchanged (Docker).
        let mut again = named("data");
        again.labels.insert("b".into(), "2".into());
        assert_eq!(engine.volume_create(&again).unwrap(), first);
        assert_eq!(engine.volume("data").unwrap(), first);
        assert_eq!(
            fs::read(Path::new(&first.mountpoint).join("f")).unwrap(),
            b"kept"
        );
        // Other options: an error.
        let mut other = named("data");
        other.options.insert("type".into(), "tmpfs".into());
        other.options.insert("device".into(), "tmpfs".into());
        assert!(
            engine
                .volume_create(&other)
                .unwrap_err()
                .to_string()
                .contains("already exists with other options")
        );
        assert_eq!(names(&engine), ["data"]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(Path::new(&first.mountpoint)), 0o755);
        assert_eq!(mode(&engine.volumes_dir().join("data")), 0o701);
        assert_eq!(mode(&engine.volumes_dir()), 0o701);
    }

    #[test]
    fn anonymous_volumes_get_a_random_name_and_the_label() {
        let (_dir, mut engine) = engine();
        let v = engine.volume_create(&VolumeOptions::default()).unwrap();
        assert_eq!(v.name.len(), 64);
        assert!(v.name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(v.labels.get(ANONYMOUS_LABEL).map(String::as_str), Some(""));
        assert!(v.is_anonymous());
        let marked = engine
            .volume_create(&VolumeOptions {
                anonymous: true,
                ..named("marked")
            })
            .unwrap();
        assert!(marked.is_anonymous());
        assert!(Path::new(&v.mountpoint).is_dir());
    }

    #[test]
    fn bad_drivers_names_and_options_are_refused() {
        let (_dir, mut engine) = engine();
        let err = engine
            .volume_create(&VolumeOptions {
                driver: "nfs".into(),
                ..named("x1")
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "plugin \"nfs\" not found");
        assert!(engine.volume_create(&named("a/b")).is_err());
        let mut opts = named("ok");
        opts.options.insert("size".into(), "1g".into());
        assert_eq!(
            engine.volume_create(&opts).unwrap_err().to_string(),
            "invalid option key: \"size\""
        );
        assert!(names(&engine).is_empty());
        assert!(!engine.volumes_dir().join("ok").exists());
    }

    #[test]
    fn orphan_directories_are_replaced_and_missing_data_remade() {
        let (_dir, mut engine) = engine();
        // A crash between mkdir and the row: a directory without a row.
        let orphan = engine.volume_mountpoint("left");
        fs::create_dir_all(&orphan).unwrap();
        fs::write(orphan.join("stale"), b"x").unwrap();
        let v = engine.volume_create(&named("left")).unwrap();
        assert!(!Path::new(&v.mountpoint).join("stale").exists());
        assert!(Path::new(&v.mountpoint).is_dir());
        // The row is the truth: its lost data directory is made again.
        fs::remove_dir_all(engine.volumes_dir().join("left")).unwrap();
        engine.volume_create(&named("left")).unwrap();
        assert!(Path::new(&v.mountpoint).is_dir());
        let leftovers: Vec<_> = fs::read_dir(engine.volumes_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["left"]);
    }

    #[test]
    fn volumes_in_use_are_not_removed_even_with_force() {
        let (_dir, mut engine) = engine();
        engine.volume_create(&named("busy")).unwrap();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        fake_container(&mut engine, &b, &["busy"]).unwrap();
        fake_container(&mut engine, &a, &["busy", "busy"]).unwrap();
        let users = engine.volume_users("busy").unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.contains(&a) && users.contains(&b));
        for force in [false, true] {
            let err = engine.volume_remove("busy", force).unwrap_err();
            assert!(matches!(err, EngineError::VolumeInUse { .. }));
            assert_eq!(
                err.to_string(),
                format!("remove busy: volume is in use - [{}]", users.join(", "))
            );
        }
        assert!(Path::new(&engine.volume("busy").unwrap().mountpoint).is_dir());
        engine.db.delete(&a, true).unwrap();
        engine.db.delete(&b, true).unwrap();
        assert!(engine.volume_users("busy").unwrap().is_empty());
        engine.volume_remove("busy", false).unwrap();
        assert!(!engine.volumes_dir().join("busy").exists());
        assert_eq!(
            engine.volume("busy").unwrap_err().to_string(),
            "get busy: no such volume"
        );
        assert_eq!(
            engine.volume_remove("busy", false).unwrap_err().to_string(),
            "get busy: no such volume"
        );
        engine.volume_remove("busy", true).unwrap();
        assert_eq!(fs::read_dir(engine.volumes_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_container_cannot_be_recorded_with_a_missing_volume() {
        let (_dir, mut engine) = engine();
        let err = fake_container(&mut engine, &"c".repeat(64), &["nope"]).unwrap_err();
        assert_eq!(err.to_string(), "get nope: no such volume");
        assert!(engine.db.all().unwrap().is_empty());
    }

    #[test]
    fn prune_takes_anonymous_unused_volumes_unless_all() {
        let (_dir, mut engine) = engine();
        let anon_used = engine.volume_create(&VolumeOptions::default()).unwrap();
        let mut labelled = VolumeOptions::default();
        labelled.labels.insert("keep".into(), "yes".into());
        let anon_kept = engine.volume_create(&labelled).unwrap();
        let anon = engine.volume_create(&VolumeOptions::default()).unwrap();
        engine.volume_create(&named("named")).unwrap();
        let mut with_opts = named("tmp");
        with_opts.options.insert("type".into(), "tmpfs".into());
        with_opts.options.insert("device".into(), "tmpfs".into());
        engine.volume_create(&with_opts).unwrap();
        fake_container(&mut engine, &"d".repeat(64), &[anon_used.name.as_str()]).unwrap();

        let data = Path::new(&anon.mountpoint);
        fs::write(data.join("a"), vec![0u8; 1000]).unwrap();
        fs::create_dir(data.join("sub")).unwrap();
        fs::write(data.join("sub/b"), vec![0u8; 234]).unwrap();
        fs::hard_link(data.join("a"), data.join("a-again")).unwrap();
        std::os::unix::fs::symlink("a", data.join("link")).unwrap();

        let filters = |given: &[&str]| {
            let given: Vec<String> = given.iter().map(|g| g.to_string()).collect();
            Filters::parse(&given, VOLUME_PRUNE_FILTERS).unwrap()
        };
        let (pruned, bytes) = engine.volume_prune(&filters(&["label!=keep=yes"])).unwrap();
        assert_eq!(pruned, std::slice::from_ref(&anon.name));
        // Each inode once, the symlink as itself ("a": one byte), directories not at all.
        assert_eq!(bytes, 1000 + 234 + 1);
        assert!(!data.exists());

        let (pruned, _) = engine.volume_prune(&filters(&[])).unwrap();
        assert_eq!(pruned, std::slice::from_ref(&anon_kept.name));

        assert!(
            engine
                .volume_prune(&filters(&["all=true", "label=other"]))
                .unwrap()
                .0
                .is_empty()
        );
        assert!(engine.volume_prune(&filters(&["all=1", "all=0"])).is_err());
        let (pruned, bytes) = engine.volume_prune(&filters(&["all=True"])).unwrap();
        assert_eq!(pruned, ["named"]);
        assert_eq!(bytes, 0);
        let mut left = names(&engine);
        left.sort();
        let mut want = vec![anon_used.name.clone(), "tmp".to_string()];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn prune_sweeps_debris_but_not_a_removal_in_progress() {
        let (_dir, mut engine) = engine();
        engine.volume_create(&named("live")).unwrap();
        let vols = engine.volumes_dir();
        fs::create_dir_all(vols.join("orphan/_data")).unwrap();
        fs::create_dir_all(vols.join(".removing-dead/_data")).unwrap();
        fs::create_dir_all(vols.join(".removing-busy/_data")).unwrap();
        let held = fs::File::open(vols.join(".removing-busy")).unwrap();
        held.lock().unwrap();
        let (pruned, _) = engine
            .volume_prune(&Filters::default().with("all", "true"))
            .unwrap();
        // "live" is unused and named: pruned with all; orphans are not reported.
        assert_eq!(pruned, ["live"]);
        let mut left: Vec<_> = fs::read_dir(&vols)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".removing-busy"]);
    }

    #[test]
    fn concurrent_creates_of_one_name_make_one_volume() {
        let (dir, _engine) = engine();
        let root = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let mut engine = Engine::open(&root).unwrap();
                    engine.volume_create(&named("shared")).unwrap()
                })
            })
            .collect();
        let made: Vec<Volume> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(made.iter().all(|v| *v == made[0]));
        let engine = Engine::open(&root).unwrap();
        assert_eq!(names(&engine), ["shared"]);
        let entries: Vec<_> = fs::read_dir(engine.volumes_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["shared"]);
    }
}
