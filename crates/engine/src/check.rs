//! `system check` for containers, beside the store's own check: every container's record
//! parses and names what exists (its image, held; its layers; its directory; its volumes
//! and networks). A crash between two steps of `create` or `rm` leaves at worst an orphan (a
//! directory, a hold on an image or an address without a record): not a problem but debris,
//! which [`Engine::sweep_orphans`] removes (`container prune` runs it).

use std::{collections::HashSet, fs, io, path::Path};

use berth_store::{CheckReport, LockGuard};

use crate::{Engine, EngineError, holder, networks, record::ContainerRecord};

/// The lock on the containers' directories: shared by whoever makes a directory before its
/// record exists (`create`) or removes it after (`discard`), exclusive for the sweep, which
/// would otherwise take those for orphans.
const CONTAINERS_LOCK: &str = "containers";

/// What `system check` found: the store's report and the containers'.
#[derive(Debug, Default)]
pub struct SystemCheck {
    /// Blobs, images and layers.
    pub store: CheckReport,
    /// Container records read.
    pub containers: usize,
    /// Broken invariants of containers, one sentence each.
    pub problems: Vec<String>,
    /// Orphans of interrupted creates and removals, which `container prune` removes.
    pub debris: usize,
}

impl SystemCheck {
    /// Whether nothing is broken (debris is not).
    pub fn is_sound(&self) -> bool {
        self.store.problems.is_empty() && self.problems.is_empty()
    }
}

/// Leftovers of containers that no record names.
#[derive(Debug, Default)]
struct Orphans {
    dirs: Vec<String>,
    holds: Vec<String>,
    addresses: Vec<String>,
}

impl Orphans {
    fn count(&self) -> usize {
        self.dirs.len() + self.holds.len() + self.addresses.len()
    }
}

impl Engine {
    /// Checks the store, then every container's record against what it names.
    pub fn check(&mut self) -> Result<SystemCheck, EngineError> {
        let mut report = SystemCheck {
            store: self.store.check()?,
            ..Default::default()
        };
        // Exclusive, so that no create or removal is seen half done (a record read before
        // its hold was, a directory after its record went).
        let _containers = self.lock_containers(true)?;
        let all_holds = self.store.image_holds()?;
        let holds: HashSet<(String, String)> = all_holds
            .iter()
            .map(|(h, image)| (h.clone(), image.to_string()))
            .collect();
        for (id, json) in self.db.raw_records()? {
            report.containers += 1;
            let problem = match serde_json::from_str::<ContainerRecord>(&json) {
                Ok(rec) => self.check_container(&rec, &holds).err(),
                Err(e) => Some(format!("its record does not parse: {e}")),
            };
            if let Some(problem) = problem {
                report.problems.push(format!("container {id}: {problem}"));
            }
        }
        report.debris = self.orphans(&all_holds)?.count();
        Ok(report)
    }

    fn check_container(
        &mut self,
        rec: &ContainerRecord,
        holds: &HashSet<(String, String)>,
    ) -> Result<(), String> {
        let image = rec
            .image
            .parse()
            .map_err(|e| format!("image ID {}: {e}", rec.image))?;
        if self
            .store
            .image_by_id(&image)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Err(format!("its image {} is missing", rec.image));
        }
        if !holds.contains(&(holder(&rec.id), rec.image.clone())) {
            return Err(format!("it does not hold its image {}", rec.image));
        }
        let dirs = &rec.graph_driver.data;
        let lowers = dirs.lower_dir.split(':').filter(|d| !d.is_empty());
        for dir in lowers.chain([dirs.upper_dir.as_str(), dirs.work_dir.as_str()]) {
            if !Path::new(dir).is_dir() {
                return Err(format!("its layer directory {dir} is missing"));
            }
        }
        for mount in &rec.mounts {
            if mount.kind == "volume"
                && self
                    .db
                    .volume(&mount.name)
                    .map_err(|e| e.to_string())?
                    .is_none()
            {
                return Err(format!("its volume {} is missing", mount.name));
            }
        }
        for network in rec.network_settings.networks.keys() {
            if networks::uses_embedded_dns_on(network)
                && self
                    .db
                    .network(network)
                    .map_err(|e| e.to_string())?
                    .is_none()
            {
                return Err(format!("its network {network} is missing"));
            }
        }
        Ok(())
    }

    /// Takes the containers' lock, shared (`create`, `discard`) or exclusive (the sweep).
    pub(crate) fn lock_containers(&self, exclusive: bool) -> Result<LockGuard, EngineError> {
        let locks = self.store.locks();
        Ok(if exclusive {
            locks.lock_exclusive(CONTAINERS_LOCK)?
        } else {
            locks.lock_shared(CONTAINERS_LOCK)?
        })
    }

    /// Directories, holds and addresses of containers that have no record.
    /// `holds` are the store's image holds, read under the same lock.
    fn orphans(&self, holds: &[(String, berth_reference::Digest)]) -> Result<Orphans, EngineError> {
        let known: HashSet<String> = self.db.container_ids()?.into_iter().collect();
        let dir = self.root.join("containers");
        let dirs = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    // A `.removing-*` directory is a sweep's that was cut short.
                    let id = name.strip_prefix(".removing-").unwrap_or(name);
                    is_container_id(id) && !known.contains(name)
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(crate::io_err(format!("read {}", dir.display()))(e)),
        };
        let holds = holds
            .iter()
            .filter_map(|(h, _)| {
                let id = h.strip_prefix("container:")?;
                (!known.contains(id)).then(|| h.clone())
            })
            .collect();
        Ok(Orphans {
            dirs,
            holds,
            addresses: self.db.allocations_without_record()?,
        })
    }

    /// Removes what crashed creates and removals left without a record: directories, holds
    /// on images, addresses. Returns how many. Takes the containers' lock exclusively, so a
    /// create or removal in progress is not mistaken for one.
    ///
    /// An orphan that cannot go is logged and left (the others still go), as `container
    /// prune` does with containers; a directory whose container lock is held (a monitor still
    /// finishing a removal) is left to its holder. Directories are renamed aside under the
    /// lock and deleted after it, so a large one holds up no create.
    pub(crate) fn sweep_orphans(&mut self) -> Result<usize, EngineError> {
        let mut swept = 0;
        let mut doomed = Vec::new();
        {
            let _containers = self.lock_containers(true)?;
            let orphans = self.orphans(&self.store.image_holds()?)?;
            for name in &orphans.dirs {
                let id = name.strip_prefix(".removing-").unwrap_or(name);
                if matches!(self.try_lock(name), Ok(None)) {
                    continue;
                }
                // A leftover cgroup of a container killed with its monitor goes too.
                if let Ok(cgroup) =
                    berth_runtime::cgroups::Cgroup::open(&crate::lifecycle::cgroup_path(id))
                {
                    let _ = cgroup.destroy();
                }
                let dir = self.container_dir(name);
                let aside = self.root.join("containers").join(format!(".removing-{id}"));
                match fs::rename(&dir, &aside) {
                    Ok(()) => doomed.push(aside),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!("sweeping {}: {e}", dir.display());
                        continue;
                    }
                }
                swept += 1;
            }
            for h in &orphans.holds {
                match self.store.release_image(h) {
                    Ok(()) => swept += 1,
                    Err(e) => tracing::warn!("sweeping the image hold {h}: {e}"),
                }
            }
            for id in &orphans.addresses {
                // Its veths, addresses and, with the last, this root's bridge.
                self.detach_networks(id, crate::networks::Links::Delete);
                swept += 1;
            }
        }
        for dir in doomed {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!("removing {}: {e}", dir.display());
            }
        }
        Ok(swept)
    }
}

/// A container directory's name: 64 lowercase hex digits.
fn is_container_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
