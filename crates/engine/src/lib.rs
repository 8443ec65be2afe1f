//! berth-engine: containers as users see them. It turns an image and Docker's run options
//! into a container record, an OCI spec with Docker's defaults and an overlay rootfs, runs
//! it with `berth-runtime`, and records how it ended.
//!
//! State under the root, next to the store's:
//!
//! ```text
//! containers.db          SQLite: every container's record (names unique), every volume's
//!                        metadata
//! containers/<id>/       upper/ and work/ (the container's own layer), rootfs/ (the
//!                        mount point, used inside the container's mount namespace only),
//!                        hostname, hosts, resolv.conf
//! volumes/<name>/_data   a volume's data (its row in containers.db says it exists)
//! ```
//! Each container holds its image in the store (`container:<id>`), so `rmi` and prune
//! leave it alone while the container exists.

mod check;
pub mod contents;
mod db;
mod disk;
pub mod exec;
pub mod health;
pub mod lifecycle;
pub mod logfile;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod networks;
pub mod ports;
pub mod procs;
pub mod record;
pub mod seccomp;
pub mod spec;
pub mod summary;
pub mod units;
pub mod volumes;

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use berth_runtime::{Exit, Rootfs, RuntimeError, Stdio};
use berth_store::{Store, StoreError, events::Event};

/// The filters `container prune` takes.
pub const CONTAINER_PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];

pub use check::SystemCheck;
pub use disk::{ContainerUsage, DiskUsage, ImageUsage, VolumeUsage};
pub use volumes::{VOLUME_FILTERS, VOLUME_PRUNE_FILTERS, Volume, VolumeOptions};

pub use record::{
    ContainerConfig, ContainerRecord, ContainerState, EndpointSettings, GraphDriver,
    GraphDriverData, HostConfig, LogConfig, MountPoint, NetworkSettings, PortBinding,
    RestartPolicy, Ulimit, ZERO_TIME,
};

use crate::db::Db;

/// An error of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// From the image store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From the runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A bad option or value.
    #[error("{0}")]
    Invalid(String),
    /// Work on the host failed (a tool such as `ps`, a cgroup read): Docker's 500.
    #[error("{0}")]
    Failed(String),
    /// No such container.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// No network has this name or ID prefix.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// `network create` of a name that is taken.
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// The container's state forbids it now (paused, restarting): Docker's 409.
    #[error("{0}")]
    Conflict(String),
    /// An ID prefix matches several containers.
    #[error("multiple containers found with provided prefix: {0}")]
    Ambiguous(String),
    /// `--name` is taken.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse {
        /// The name.
        name: String,
        /// Who has it.
        id: String,
    },
    /// The container does not run (for `kill`, `pause`, `exec`, ...).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// A running container cannot be removed without force.
    #[error(
        "cannot remove container \"/{0}\": container is running: stop the container before removing or force remove"
    )]
    Running(String),
    /// `cp`: nothing at this path in the container.
    #[error("Could not find the file {path} in container {container}")]
    NoSuchPath {
        /// The container as it was named.
        container: String,
        /// The path.
        path: String,
    },
    /// `cp` of a tar stream into a path that is not a directory.
    #[error("extraction point is not a directory")]
    NotADirectory,
    /// `cp` into a container whose root is read-only, outside its writable mounts.
    #[error("container rootfs is marked read-only")]
    ReadOnlyRootfs,
    /// File system work on the container's directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// A volume that containers use cannot be removed, even with force (Docker).
    #[error("remove {name}: volume is in use - [{}]", .users.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The IDs of the containers that use it.
        users: Vec<String>,
    },
    /// A volume driver berth does not have (only `local` exists).
    #[error("plugin {0:?} not found")]
    NoSuchVolumeDriver(String),
    /// containers.db.
    #[error("containers database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A record that does not parse.
    #[error("container record: {0}")]
    Record(#[from] serde_json::Error),
}

/// The checks Docker's daemon makes on a container's resources before creating it (so the
/// CLI and the Engine API refuse alike), with its messages.
pub fn validate_host_config(host: &HostConfig) -> Result<(), String> {
    if host.memory != 0 && host.memory < 6 * 1024 * 1024 {
        return Err("Minimum memory limit allowed is 6MB".into());
    }
    if host.memory_swap > 0 && host.memory == 0 {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if host.memory_swap > 0 && host.memory_swap < host.memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    // Counting CPUs reads cgroup files: only for a limit (not on every build step's create).
    if host.nano_cpus != 0 {
        let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        if host.nano_cpus < 0 || host.nano_cpus > online * 1_000_000_000 {
            return Err(format!(
                "Range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
            ));
        }
    }
    if let Some(path) = host.tmpfs.keys().find(|p| !p.starts_with('/')) {
        return Err(format!(
            "invalid mount path {path:?}: mount path must be absolute"
        ));
    }
    for u in &host.ulimits {
        if u.soft > u.hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
        if !ULIMIT_NAMES.contains(&u.name.as_str()) {
            return Err(format!("invalid ulimit type: {}", u.name));
        }
    }
    for h in &host.extra_hosts {
        let (name, address) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .unwrap_or((h, ""));
        if name.is_empty() || address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address in add-host: \"{address}\""));
        }
    }
    Ok(())
}

/// The rlimits `--ulimit` may name.
pub const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

/// What `create` and `run` take, with Docker's flag names in the docs.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The image as the user named it.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// The command after the image.
    pub cmd: Vec<String>,
    /// `--entrypoint` as a list (Docker's `Entrypoint`; one empty string clears the
    /// image's).
    pub entrypoint: Option<Vec<String>>,
    /// `-e` and `--env-file`, already `KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-h`.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// Docker's `StdinOnce`: stdin closes when the attached client's input ends.
    pub stdin_once: bool,
    /// `--label`.
    pub labels: Vec<(String, String)>,
    /// `--stop-signal` (the image's `STOPSIGNAL` otherwise).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<i64>,
    /// A client attaches to the container's output (`run` without `-d`).
    pub attach: bool,
    /// `-v` and `--mount`, parsed ([`mounts::parse_volume_flag`],
    /// [`mounts::parse_mount_flag`]).
    pub mounts: Vec<mounts::MountRequest>,
    /// `--volumes-from` (`CONTAINER[:ro|rw]`).
    pub volumes_from: Vec<String>,
    /// `--expose`, as `80/tcp` keys.
    pub expose: Vec<String>,
    /// `--network-alias`: more DNS names on its (user-defined) network.
    pub network_aliases: Vec<String>,
    /// `--health-*`, the API's `Healthcheck`: over the image's `HEALTHCHECK`.
    pub healthcheck: Option<health::HealthConfig>,
    /// Everything else Docker keeps in `HostConfig`.
    pub host: HostConfig,
}

/// A running container started by this process.
pub struct Started {
    /// The container's ID.
    pub id: String,
    container: berth_runtime::Container,
    /// Its volumes' names, for `--rm` to remove the anonymous ones.
    volumes: Vec<String>,
    /// Its address on its first network.
    address: Option<std::net::Ipv4Addr>,
    /// Its embedded DNS server (on a user-defined network), stopped when this is dropped.
    _dns: Option<berth_net::DnsServer>,
}

impl Started {
    /// The host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.container.pid()
    }

    /// Its address on its first network, where published ports lead.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.address
    }

    /// The master side of a `-t` container's pty, once.
    pub fn take_console(&mut self) -> Option<std::os::fd::OwnedFd> {
        self.container.take_console()
    }

    /// Waits for the container to exit.
    pub fn wait(&mut self) -> Result<Exit, EngineError> {
        Ok(self.container.wait()?)
    }
}

/// An open state root: the image store and the containers.
pub struct Engine {
    root: PathBuf,
    store: Store,
    db: Db,
}

impl Engine {
    /// Opens (creating as needed) the engine state under `root`.
    pub fn open(root: &Path) -> Result<Engine, EngineError> {
        let store = Store::open(root)?;
        fs::create_dir_all(root.join("containers")).map_err(io_err("create containers/"))?;
        let db = Db::open(&root.join("containers.db"))?;
        Ok(Engine {
            root: root.to_path_buf(),
            store,
            db,
        })
    }

    /// The image store.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A container's directory: its own layer, `/etc` files, log and attach socket.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The record of the container `key` names (ID, name or unique ID prefix), as it is:
    /// a container whose record says it runs but whose monitor is gone is found out and
    /// recorded as exited (see [`Engine::reconcile`]).
    pub fn container(&mut self, key: &str) -> Result<ContainerRecord, EngineError> {
        let rec = self.record(key)?;
        self.reconcile(rec)?
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_string()))
    }

    /// The stored record, without checking it against the processes.
    pub(crate) fn record(&self, key: &str) -> Result<ContainerRecord, EngineError> {
        let id = self
            .db
            .resolve(key)?
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_string()))?;
        self.db
            .get(&id)?
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_string()))
    }

    /// Records a container's state, leaving the rest of its record as it is.
    /// Writes a container's state, keeping the `Health` its checker wrote: a state made
    /// from an earlier read must not undo a newer check.
    pub(crate) fn set_state(
        &mut self,
        id: &str,
        state: &ContainerState,
    ) -> Result<(), EngineError> {
        self.db.set_state_keeping_health(id, state)
    }

    /// Writes a container's `State.Health` (its checker's results).
    pub(crate) fn set_health(
        &mut self,
        id: &str,
        health: &health::Health,
    ) -> Result<(), EngineError> {
        self.db.set_field(id, "State.Health", health)
    }

    /// Sets or clears `HasBeenManuallyStopped` (see [`ContainerRecord`]).
    pub(crate) fn set_manually_stopped(
        &mut self,
        id: &str,
        value: bool,
    ) -> Result<(), EngineError> {
        self.db.set_field(id, "HasBeenManuallyStopped", &value)
    }

    /// Sets how often the restart policy restarted the container.
    pub(crate) fn set_restart_count(&mut self, id: &str, count: i64) -> Result<(), EngineError> {
        self.db.set_field(id, "RestartCount", &count)
    }

    /// Bytes in a container's own layer (what `ps -s` and `system df` call its size).
    pub fn container_size(&self, id: &str) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map_or(0, |m| m.len()),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.container_dir(id).join("upper"))
    }

    /// Every container, newest first, each checked as [`Engine::container`] does.
    pub fn containers(&mut self) -> Result<Vec<ContainerRecord>, EngineError> {
        let mut out = Vec::new();
        for rec in self.db.all()? {
            if let Some(rec) = self.reconcile(rec)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Creates a container from an image: its record, its own layer and its hold on the
    /// image. Nothing runs yet.
    pub fn create(&mut self, opts: &CreateOptions) -> Result<ContainerRecord, EngineError> {
        validate_host_config(&opts.host).map_err(EngineError::Invalid)?;
        let image_rec = self.store.resolve(&opts.image)?;
        let image = self.store.image(image_rec)?;
        let run = image.config.config.clone().unwrap_or_default();
        let id = new_id()?;
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let (entrypoint, cmd) = spec::command(
            run.entrypoint.as_deref(),
            run.cmd.as_deref(),
            opts.entrypoint.as_deref(),
            &opts.cmd,
        );
        let mut argv: Vec<String> = entrypoint
            .iter()
            .flatten()
            .chain(cmd.iter().flatten())
            .cloned()
            .collect();
        if argv.is_empty() {
            return Err(EngineError::Invalid("no command specified".into()));
        }
        let path = argv.remove(0);
        // Validate what the runtime would only find out later.
        spec::capabilities(
            opts.host.privileged,
            &opts.host.cap_add,
            &opts.host.cap_drop,
        )?;
        security_options(&opts.host.security_opt)?;
        let mut labels = run.labels.clone().unwrap_or_default();
        labels.extend(opts.labels.iter().cloned());
        if let Some(check) = &opts.healthcheck {
            check.validate()?;
        }
        // An image's check that does not read as one is left out, as an unknown field.
        let image_check: Option<health::HealthConfig> = run
            .healthcheck
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let healthcheck =
            health::HealthConfig::merged(opts.healthcheck.as_ref(), image_check.as_ref());
        let env = spec::environment(
            run.env.as_deref().unwrap_or_default(),
            &opts.env,
            &hostname,
            opts.tty,
        );
        let mut host = opts.host.clone();
        if host.restart_policy.name.is_empty() {
            host.restart_policy.name = "no".into();
        }
        if host.auto_remove && host.restart_policy.name != "no" {
            return Err(EngineError::Invalid(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
        if host.log_config.kind.is_empty() {
            host.log_config.kind = "json-file".into();
        }
        match host.log_config.kind.as_str() {
            "json-file" => {
                logfile::LogConfig::from_opts(
                    host.log_config
                        .config
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .map_err(EngineError::Invalid)?;
            }
            "none" if host.log_config.config.is_empty() => {}
            "none" => {
                return Err(EngineError::Invalid(
                    "the none log driver takes no options".into(),
                ));
            }
            other => {
                return Err(EngineError::Invalid(format!(
                    "logging driver {other:?} is not supported: berth has json-file and none"
                )));
            }
        }
        if let Some(signal) = &opts.stop_signal {
            lifecycle::parse_signal(signal).map_err(EngineError::Invalid)?;
        }
        if host.network_mode.is_empty() || host.network_mode == "default" {
            host.network_mode = "bridge".into();
        }
        if !matches!(
            host.network_mode.as_str(),
            "bridge" | "none" | "host" | "default"
        ) {
            // A user-defined network, by name or ID prefix; recorded by its name.
            host.network_mode = self.network(&host.network_mode)?.name;
        }
        let dir = self.container_dir(&id);
        let mut lower: Vec<String> = image
            .chain_ids()?
            .iter()
            .rev()
            .map(|c| self.store.layer_dir(c).display().to_string())
            .collect();
        let image_has_no_layers = lower.is_empty();
        if image_has_no_layers {
            // overlayfs needs a lower layer; an image without layers gets an empty one.
            lower.push(dir.join("empty").display().to_string());
        }
        let graph_driver = GraphDriver {
            name: "overlay2".into(),
            data: GraphDriverData {
                lower_dir: lower.join(":"),
                upper_dir: dir.join("upper").display().to_string(),
                work_dir: dir.join("work").display().to_string(),
                merged_dir: dir.join("rootfs").display().to_string(),
            },
        };
        let layer_dirs: Vec<PathBuf> = lower.iter().map(PathBuf::from).collect();
        let image_volumes: Vec<String> = run
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let mounts = self.resolve_mounts(
            &opts.mounts,
            &opts.volumes_from,
            &image_volumes,
            &layer_dirs,
            &mut host.tmpfs,
        )?;
        host.volumes_from = opts.volumes_from.clone();
        let mut exposed_ports = run.exposed_ports.clone().unwrap_or_default();
        for key in host.port_bindings.keys().chain(&opts.expose) {
            exposed_ports
                .entry(key.clone())
                .or_insert_with(|| serde_json::json!({}));
        }
        if host.publish_all_ports {
            for key in exposed_ports.keys() {
                host.port_bindings
                    .entry(key.clone())
                    .or_insert_with(|| vec![PortBinding::default()]);
            }
        }
        if !host.port_bindings.is_empty() && matches!(host.network_mode.as_str(), "none" | "host") {
            // Docker's rule: nothing to publish without a network of the container's own.
            tracing::warn!(
                "Published ports are discarded when using {} network mode",
                host.network_mode
            );
            host.port_bindings.clear();
        }
        let now = jiff::Timestamp::now().to_string();
        let network = host.network_mode.clone();
        if !opts.network_aliases.is_empty() && !networks::uses_embedded_dns_on(&network) {
            return Err(EngineError::Invalid(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        let endpoint = EndpointSettings {
            aliases: (!opts.network_aliases.is_empty()).then(|| opts.network_aliases.clone()),
            ..Default::default()
        };
        let mut rec = ContainerRecord {
            id: id.clone(),
            created: now,
            path,
            args: argv,
            state: ContainerState {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            image: image.record.id.to_string(),
            name: String::new(),
            config: ContainerConfig {
                hostname,
                user: opts.user.clone().or(run.user.clone()).unwrap_or_default(),
                tty: opts.tty,
                open_stdin: opts.interactive,
                env,
                cmd,
                entrypoint,
                image: opts.image.clone(),
                working_dir: opts
                    .workdir
                    .clone()
                    .or(run.working_dir.clone())
                    .unwrap_or_default(),
                labels,
                stop_signal: opts.stop_signal.clone().or(run.stop_signal.clone()),
                stop_timeout: opts.stop_timeout,
                stdin_once: opts.stdin_once,
                attach_stdin: opts.attach && opts.interactive,
                attach_stdout: opts.attach,
                attach_stderr: opts.attach,
                exposed_ports: exposed_ports.clone(),
                healthcheck,
            },
            host_config: host,
            graph_driver,
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            restart_count: 0,
            has_been_manually_stopped: false,
            mounts,
            network_settings: NetworkSettings {
                ports: exposed_ports.keys().map(|k| (k.clone(), None)).collect(),
                networks: [(network, endpoint)].into(),
                ..Default::default()
            },
        };

        let mut subdirs = vec!["upper", "work", "rootfs"];
        if image_has_no_layers {
            subdirs.push("empty");
        }
        let holder = holder(&id);
        // From the directory's making to the record's insertion (or, on failure, to the
        // removal of what was made) this container is an orphan to `sweep_orphans`, which
        // the shared lock keeps away.
        let containers = self.lock_containers(false)?;
        let registered = (|| {
            for sub in subdirs {
                fs::create_dir_all(dir.join(sub))
                    .map_err(io_err(format!("create {}", dir.join(sub).display())))?;
            }
            self.store.hold_image(&holder, &image.record.id)?;
            berth_store::crash::point("create.held");
            match &opts.name {
                Some(name) => {
                    rec.name = names::validate_name(name)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    self.db.insert(&rec)
                }
                None => {
                    // Docker's loop: a few random names, then the short ID.
                    let mut attempt = 0;
                    loop {
                        rec.name = if attempt < 6 {
                            names::random_name(attempt)
                        } else {
                            id[..12].to_string()
                        };
                        match self.db.insert(&rec) {
                            Err(EngineError::NameInUse { .. }) if attempt < 6 => attempt += 1,
                            other => break other,
                        }
                    }
                }
            }
        })();
        if let Err(e) = registered {
            let _ = self.store.release_image(&holder);
            let _ = fs::remove_dir_all(&dir);
            drop(containers);
            self.remove_anonymous_volumes(&volume_names(&rec));
            return Err(e);
        }
        drop(containers);
        self.container_event(&rec, "create", &[]);
        Ok(rec)
    }

    /// Starts the container `rec` records with `stdio` (ignored for `-t` containers, whose
    /// stdio is their pty; `console_size` sizes it). Returns once its command runs.
    pub fn start(
        &mut self,
        mut rec: ContainerRecord,
        stdio: Stdio,
        console_size: Option<(u16, u16)>,
    ) -> Result<Started, EngineError> {
        let dir = self.container_dir(&rec.id);
        // Read once: the container's resolv.conf and its DNS server's upstreams come from it.
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let etc = self.write_etc_files(&rec, &dir, &host_resolv)?;
        let config = self.init_config(&rec, &etc)?;
        let created = berth_runtime::create(berth_runtime::CreateOptions {
            config,
            stdio,
            cgroup_path: Some(lifecycle::cgroup_path(&rec.id)),
            console_size,
        });
        let mut container = match created {
            Ok(c) => c,
            Err(e) => return Err(self.record_start_failure(rec, e)),
        };
        let mut address = None;
        let mut dns = None;
        if !matches!(rec.host_config.network_mode.as_str(), "none" | "host") {
            match self.attach_networks(&rec, container.pid()) {
                Ok(attached) => {
                    address = attached.address;
                    // No network left (all disconnected): no address, no hosts line.
                    let written = match attached.address {
                        Some(ip) => {
                            let line = format!("{ip}\t{}\n", rec.config.hostname);
                            fs::OpenOptions::new()
                                .append(true)
                                .open(dir.join("hosts"))
                                .and_then(|mut f| {
                                    std::io::Write::write_all(&mut f, line.as_bytes())
                                })
                        }
                        None => Ok(()),
                    };
                    let hosts = dir.join("hosts");
                    rec.network_settings = attached.settings;
                    let saved = written
                        .map_err(io_err(format!("write {}", hosts.display())))
                        .and_then(|()| {
                            self.db
                                .set_field(&rec.id, "NetworkSettings", &rec.network_settings)
                        })
                        .and_then(|()| {
                            dns = self.start_dns(&rec, container.pid(), &host_resolv)?;
                            Ok(())
                        });
                    if let Err(e) = saved {
                        let _ = container.delete();
                        self.detach_networks(&rec.id, networks::Links::Delete);
                        return Err(e);
                    }
                }
                Err(e) => {
                    let _ = container.delete();
                    rec.state.status = "exited".into();
                    rec.state.exit_code = 128;
                    rec.state.error = e.to_string();
                    let _ = self.set_state(&rec.id, &rec.state);
                    return Err(e);
                }
            }
        }
        // Recorded while the kernel executes the command: a command that cannot run is
        // recorded as exited right after.
        let released = container.release();
        let running = ContainerState {
            status: "running".into(),
            running: true,
            pid: container.pid(),
            started_at: jiff::Timestamp::now().to_string(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        };
        let recorded = match &released {
            Ok(()) => self.set_state(&rec.id, &running),
            Err(_) => Ok(()),
        };
        if let Err(e) = released.and_then(|()| container.confirm_start()) {
            if address.is_some() {
                self.detach_networks(&rec.id, networks::Links::Delete);
            }
            let _ = container.delete();
            return Err(self.record_start_failure(rec, e));
        }
        rec.state = running;
        recorded?;
        if rec
            .config
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.probe_command().is_some())
        {
            self.set_health(&rec.id, &health::Health::starting())?;
        }
        self.container_event(&rec, "start", &[]);
        Ok(Started {
            volumes: volume_names(&rec),
            address,
            _dns: dns,
            id: rec.id,
            container,
        })
    }

    /// What the runtime gets for `rec`: its OCI spec with Docker's defaults, its overlay,
    /// its identity and its compiled seccomp filter. `etc` are its hostname, hosts and
    /// resolv.conf files.
    fn init_config(
        &self,
        rec: &ContainerRecord,
        etc: &[PathBuf; 3],
    ) -> Result<berth_runtime::InitConfig, EngineError> {
        let hc = &rec.host_config;
        let caps = spec::capabilities(hc.privileged, &hc.cap_add, &hc.cap_drop)?;
        let security = security_options(&hc.security_opt)?;
        let seccomp = if hc.privileged || security.seccomp_unconfined {
            None
        } else {
            self.seccomp_filter(security.seccomp_profile.as_deref(), &caps)?
        };
        let layers = &rec.graph_driver.data;
        let rootfs_dir = PathBuf::from(&layers.merged_dir);
        // Each volume is looked up for its driver options (one query each).
        let mut volume_options = std::collections::BTreeMap::new();
        for m in rec.mounts.iter().filter(|m| m.kind == "volume") {
            if let Ok(v) = self.volume(&m.name)
                && !v.options.is_empty()
            {
                volume_options.insert(m.name.clone(), v.options);
            }
        }
        let spec = spec::build(
            rec,
            &spec::SpecInputs {
                rootfs: &rootfs_dir,
                etc_files: [
                    ("/etc/hostname", &etc[0]),
                    ("/etc/hosts", &etc[1]),
                    ("/etc/resolv.conf", &etc[2]),
                ],
                capabilities: &caps,
                no_new_privileges: security.no_new_privileges,
                volume_options: &volume_options,
            },
        )?;
        let config = berth_runtime::InitConfig {
            spec,
            rootfs: Rootfs::Overlay {
                lower: layers.lower_dir.split(':').map(PathBuf::from).collect(),
                upper: PathBuf::from(&layers.upper_dir),
                work: PathBuf::from(&layers.work_dir),
                target: rootfs_dir,
            },
            user: Some(rec.config.user.clone()),
            group_add: hc.group_add.clone(),
            init: hc.init.unwrap_or(false),
            create_cwd: true,
            seccomp,
        };
        Ok(config)
    }

    /// The compiled seccomp filter for a profile (Docker's default when `custom` is None) and
    /// capability set, from `cache/seccomp/` when it was compiled before: resolving and
    /// compiling Docker's profile costs more than starting the container.
    fn seccomp_filter(
        &self,
        custom: Option<&str>,
        caps: &[String],
    ) -> Result<Option<berth_runtime::seccomp::CompiledFilter>, EngineError> {
        let uname = rustix::system::uname();
        let kernel = uname.release().to_string_lossy();
        let key_text = format!(
            "{}\0{}\0{}\0{}\0{kernel}",
            env!("CARGO_PKG_VERSION"),
            custom.unwrap_or("docker-default"),
            caps.join(","),
            std::env::consts::ARCH
        );
        let key = berth_reference::Digest::sha256_of(key_text.as_bytes());
        let dir = self.root.join("cache/seccomp");
        let path = dir.join(format!("{}.bpf", key.encoded()));
        if let Ok(bytes) = fs::read(&path)
            && bytes.len() >= 4
        {
            let (flags, program) = bytes.split_at(4);
            return Ok(Some(berth_runtime::seccomp::CompiledFilter {
                program: program.to_vec(),
                flags: u32::from_le_bytes(flags.try_into().expect("4 bytes")),
            }));
        }
        let profile = match custom {
            Some(json) => seccomp::parse_profile(json.as_bytes())
                .map_err(|e| EngineError::Invalid(format!("seccomp profile: {e}")))?,
            None => seccomp::default_profile(),
        };
        if profile.is_unconfined() {
            return Ok(None);
        }
        let oci = seccomp::to_oci(&profile, caps, std::env::consts::ARCH)
            .map_err(|e| EngineError::Invalid(format!("seccomp profile: {e}")))?;
        let compiled = berth_runtime::seccomp::compile(&oci)
            .map_err(|e| EngineError::Invalid(format!("seccomp profile: {e}")))?;
        // A cache: written whole through a rename, never fsynced (a lost file is recompiled).
        let mut bytes = compiled.flags.to_le_bytes().to_vec();
        bytes.extend_from_slice(&compiled.program);
        let tmp = dir.join(format!(".{}.{}", key.encoded(), std::process::id()));
        let written = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&tmp, &bytes))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            tracing::debug!("caching the seccomp filter: {e}");
        }
        Ok(Some(compiled))
    }

    fn record_start_failure(&mut self, mut rec: ContainerRecord, e: RuntimeError) -> EngineError {
        rec.state.status = "exited".into();
        // Docker's codes: 127 and 126 for a command that cannot run, 128 otherwise.
        rec.state.exit_code = match &e {
            RuntimeError::Exec { failure, .. } => i32::from(failure.exit_code()),
            _ => 128,
        };
        rec.state.error = e.to_string();
        let _ = self.set_state(&rec.id, &rec.state);
        EngineError::Runtime(e)
    }

    /// Records how a started container ended and removes its cgroup.
    pub fn finish(&mut self, started: Started, exit: Exit) -> Result<(), EngineError> {
        let result = started.container.delete();
        if started.address.is_some() {
            self.detach_networks(&started.id, networks::Links::GoWithNamespace);
            self.clear_network_settings(&started.id)?;
        }
        let mut rec = self.record(&started.id)?;
        rec.state = ContainerState {
            status: "exited".into(),
            oom_killed: exit.oom_killed,
            exit_code: exit.code,
            started_at: rec.state.started_at,
            finished_at: jiff::Timestamp::now().to_string(),
            ..Default::default()
        };
        self.set_state(&rec.id, &rec.state)?;
        self.die_events(&rec, &exit);
        result.map_err(EngineError::from)
    }

    /// Removes a container: its processes (with `force`), cgroup, directory, record and
    /// hold on its image.
    pub fn remove(&mut self, key: &str, force: bool) -> Result<ContainerRecord, EngineError> {
        self.remove_with_volumes(key, force, false)
    }

    /// [`Engine::remove`], and with `volumes` (`rm -v`) its anonymous volumes that no other
    /// container uses.
    pub fn remove_with_volumes(
        &mut self,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> Result<ContainerRecord, EngineError> {
        let rec = self.container(key)?;
        if lifecycle::is_active(&rec.state) {
            if !force {
                return Err(EngineError::Running(rec.name));
            }
            match self.stop(&rec.id, Some(0), Some(rustix::process::Signal::KILL)) {
                Ok(_) => {}
                // Started with --rm: its monitor removed it.
                Err(EngineError::NoSuchContainer(_)) => return Ok(rec),
                Err(e) => return Err(e),
            }
        }
        if let Ok(cgroup) = berth_runtime::cgroups::Cgroup::open(&lifecycle::cgroup_path(&rec.id)) {
            cgroup.destroy().map_err(RuntimeError::from)?;
        }
        self.discard(&rec.id, true)?;
        self.container_event(&rec, "destroy", &[]);
        if volumes {
            self.remove_anonymous_volumes(&volume_names(&rec));
        }
        Ok(rec)
    }

    /// What `--rm` does when a started container has exited: removes it instead of
    /// recording how it ended.
    pub fn finish_and_remove(&mut self, started: Started, exit: &Exit) -> Result<(), EngineError> {
        let deleted = started.container.delete();
        if started.address.is_some() {
            self.detach_networks(&started.id, networks::Links::GoWithNamespace);
        }
        let rec = self.record(&started.id)?;
        self.die_events(&rec, exit);
        self.discard(&started.id, false)?;
        self.container_event(&rec, "destroy", &[]);
        // Docker's --rm takes the container's anonymous volumes with it.
        self.remove_anonymous_volumes(&started.volumes);
        deleted.map_err(EngineError::from)
    }

    /// Tells the event log of `action` on the container `rec`, with Docker's attributes: its
    /// labels, its image as named, its name, and `extra`.
    pub(crate) fn container_event(
        &self,
        rec: &ContainerRecord,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut event = Event::now("container", action, &rec.id);
        for (k, v) in extra {
            event = event.with(k, v.clone());
        }
        let event = event
            .with("image", rec.config.image.clone())
            .with("name", rec.name.clone())
            .with_all(&rec.config.labels);
        self.store.record_event(event);
    }

    /// A container's end: `oom` when the kernel killed it for memory, then `die`.
    fn die_events(&self, rec: &ContainerRecord, exit: &Exit) {
        if exit.oom_killed {
            self.container_event(rec, "oom", &[]);
        }
        self.container_event(rec, "die", &[("exitCode", exit.code.to_string())]);
    }

    /// What `inspect` shows of a stopped container's networks: their names, no addresses.
    pub(crate) fn clear_network_settings(&mut self, id: &str) -> Result<(), EngineError> {
        let rec = self.record(id)?;
        let cleared = NetworkSettings {
            ports: rec
                .network_settings
                .ports
                .keys()
                .map(|k| (k.clone(), None))
                .collect(),
            networks: rec
                .network_settings
                .networks
                .keys()
                .map(|k| (k.clone(), EndpointSettings::default()))
                .collect(),
            ..Default::default()
        };
        self.db.set_field(id, "NetworkSettings", &cleared)
    }

    /// Records the host ports a container's published ports are bound to (`port`,
    /// `inspect`).
    pub fn set_published_ports(
        &mut self,
        id: &str,
        bound: &ports::PortMap,
    ) -> Result<(), EngineError> {
        let mut rec = self.record(id)?;
        for (key, bindings) in bound {
            rec.network_settings
                .ports
                .insert(key.clone(), Some(bindings.clone()));
        }
        self.db
            .set_field(id, "NetworkSettings.Ports", &rec.network_settings.ports)
    }

    /// Removes the anonymous volumes among `names` that no container uses any more (the
    /// container that had them is gone). Failures are logged: the container is removed
    /// either way, and `volume prune` finds what is left.
    pub(crate) fn remove_anonymous_volumes(&mut self, names: &[String]) {
        for name in names {
            let anonymous = self
                .volume(name)
                .is_ok_and(|v| v.labels.contains_key(volumes::ANONYMOUS_LABEL));
            if !anonymous {
                continue;
            }
            match self.volume_users(name) {
                Ok(users) if users.is_empty() => {
                    if let Err(e) = self.volume_remove(name, false) {
                        tracing::warn!("removing anonymous volume {name}: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("removing anonymous volume {name}: {e}"),
            }
        }
    }

    /// Removes a container whose processes and cgroup are gone: its record (with its
    /// addresses), then its hold on its image, then its directory. In that order a crash
    /// between two steps leaves at worst a hold or a directory without a record, which
    /// `sweep_orphans` (`container prune`) removes, never a record whose files are half gone.
    ///
    /// `durable` syncs the record's deletion to disk before the directory goes. A container
    /// started with `--rm` does without: should a power cut bring its record back, it is
    /// that of a `--rm` container that no one looks after, which `reconcile` removes.
    fn discard(&mut self, id: &str, durable: bool) -> Result<(), EngineError> {
        let _containers = self.lock_containers(false)?;
        self.db.delete(id, durable)?;
        berth_store::crash::point("rm.record-deleted");
        // The container is gone from here on: what fails now is left to the sweep.
        if let Err(e) = self.store.release_image(&holder(id)) {
            tracing::warn!(
                "releasing the image of container {id}: {e} (`berth container prune` does)"
            );
        }
        berth_store::crash::point("rm.released");
        let dir = self.container_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // The container is gone; what is left of its files is the sweep's.
            Err(e) => tracing::warn!(
                "removing {}: {e} (`berth container prune` removes what is left)",
                dir.display()
            ),
        }
        Ok(())
    }

    /// A container's hostname, hosts and resolv.conf files, bound into it.
    fn etc_files(dir: &Path) -> [PathBuf; 3] {
        [
            dir.join("hostname"),
            dir.join("hosts"),
            dir.join("resolv.conf"),
        ]
    }

    fn write_etc_files(
        &self,
        rec: &ContainerRecord,
        dir: &Path,
        host_resolv: &str,
    ) -> Result<[PathBuf; 3], EngineError> {
        let [hostname, hosts, resolv] = Self::etc_files(dir);
        fs::write(&hostname, format!("{}\n", rec.config.hostname))
            .map_err(io_err("write hostname"))?;
        let hosts_text = if rec.host_config.network_mode == "host" {
            fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
        };
        let mut hosts_text = hosts_text;
        for entry in &rec.host_config.extra_hosts {
            // `name:address` (Docker also takes `name=address`); an IPv6 address has colons.
            let (name, address) = entry
                .split_once('=')
                .or_else(|| entry.split_once(':'))
                .unwrap_or((entry.as_str(), ""));
            hosts_text.push_str(&format!("{address}\t{name}\n"));
        }
        fs::write(&hosts, hosts_text).map_err(io_err("write hosts"))?;
        let resolv_text = if networks::uses_embedded_dns(rec) {
            let servers: Vec<String> = networks::external_dns_servers(rec, host_resolv)
                .iter()
                .map(|s| format!("host({})", s.ip()))
                .collect();
            embedded_dns_resolv_conf(host_resolv, &servers)
        } else if !rec.host_config.dns.is_empty() {
            let others: String = host_resolv
                .lines()
                .filter(|l| !l.trim_start().starts_with("nameserver"))
                .map(|l| format!("{l}\n"))
                .collect();
            let servers: String = rec
                .host_config
                .dns
                .iter()
                .map(|d| format!("nameserver {d}\n"))
                .collect();
            others + &servers
        } else if rec.host_config.network_mode == "host" {
            host_resolv.to_string()
        } else {
            container_resolv_conf(host_resolv)
        };
        fs::write(&resolv, resolv_text).map_err(io_err("write resolv.conf"))?;
        Ok([hostname, hosts, resolv])
    }
}

/// A container on a user-defined network asks its embedded DNS server (Docker's file: the
/// host's search domains and options, `ndots:0`, and where unknown names go in a comment).
fn embedded_dns_resolv_conf(host: &str, external: &[String]) -> String {
    let mut out = format!("nameserver {}\n", berth_net::DNS_ADDRESS);
    let mut options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search" | "domain") => out.push_str(&format!("{line}\n")),
            Some("options") => options.extend(
                words
                    .filter(|o| !o.starts_with("ndots:"))
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    options.insert(0, "ndots:0".into());
    out.push_str(&format!("options {}\n", options.join(" ")));
    out.push_str(&format!("\n# ExtServers: [{}]\n", external.join(" ")));
    out
}

/// Docker's rule: the host's resolv.conf without loopback nameservers (unreachable from the
/// container's network namespace); Google's public DNS when none is left.
fn container_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for server in networks::FALLBACK_DNS {
            out.push_str(&format!("nameserver {server}\n"));
        }
    }
    out
}

#[derive(Default)]
struct SecurityOptions {
    seccomp_unconfined: bool,
    seccomp_profile: Option<String>,
    no_new_privileges: bool,
}

/// `--security-opt` values, as Docker stores them (`seccomp=<profile JSON>` after the CLI
/// reads the file).
fn security_options(opts: &[String]) -> Result<SecurityOptions, EngineError> {
    let mut out = SecurityOptions::default();
    for opt in opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("seccomp", Some("unconfined")) => out.seccomp_unconfined = true,
            ("seccomp", Some(profile)) => out.seccomp_profile = Some(profile.to_string()),
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            _ => {
                return Err(EngineError::Invalid(format!(
                    "invalid --security-opt: {opt:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// The names of a container's volumes.
pub(crate) fn volume_names(rec: &ContainerRecord) -> Vec<String> {
    rec.mounts
        .iter()
        .filter(|m| m.kind == "volume")
        .map(|m| m.name.clone())
        .collect()
}

/// How a container is named as a holder of its image in the store.
fn holder(id: &str) -> String {
    format!("container:{id}")
}

/// A new random 64-hex-digit ID, as Docker gives containers, networks and exec instances.
pub fn new_id() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| io_err("getrandom")(e.into()))?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_for_the_embedded_dns() {
        assert_eq!(
            embedded_dns_resolv_conf(
                "search lab\nnameserver 10.0.0.2\noptions ndots:2 edns0\n",
                &["host(10.0.0.2)".into()]
            ),
            "nameserver 127.0.0.11\nsearch lab\noptions ndots:0 edns0\n\n# ExtServers: [host(10.0.0.2)]\n"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        assert_eq!(
            container_resolv_conf("search x\nnameserver 127.0.0.53\n"),
            "search x\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            container_resolv_conf("nameserver 10.0.0.2\nnameserver ::1\n"),
            "nameserver 10.0.0.2\n"
        );
    }

    #[test]
    fn security_options_parse() {
        let o =
            security_options(&["seccomp=unconfined".into(), "no-new-privileges".into()]).unwrap();
        assert!(o.seccomp_unconfined && o.no_new_privileges);
        assert!(security_options(&["apparmor=x".into()]).is_err());
    }
}
