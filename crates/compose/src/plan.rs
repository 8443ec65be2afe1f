//! A project's services as the engine's objects: names, Docker Compose's labels, the
//! config hash that says whether a container is up to date, and each container's create
//! options.

use std::collections::BTreeMap;

use berth_engine::{
    CreateOptions, HostConfig, RestartPolicy,
    health::HealthConfig,
    mounts::{MountRequest, parse_volume_flag},
    ports::{PortMap, parse_expose, parse_publish},
};
use sha2::{Digest as _, Sha256};

use crate::{
    ComposeError, Project,
    load::service_environment,
    model::{Build, Service},
};

/// The project a container, network or volume belongs to.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The service a container runs.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// Which of the service's containers it is (1, 2, ...).
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
/// `True` for `compose run`'s containers.
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
/// The hash of the service's configuration the container was made from.
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";
/// The project's directory.
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
/// The project's files.
pub const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
/// The compose version that made it.
pub const VERSION_LABEL: &str = "com.docker.compose.version";
/// A network's key in the file.
pub const NETWORK_LABEL: &str = "com.docker.compose.network";
/// A volume's key in the file.
pub const VOLUME_LABEL: &str = "com.docker.compose.volume";
/// The version berth writes into [`VERSION_LABEL`].
pub const COMPOSE_VERSION: &str = "2.29.0";

/// What `build:` asks for, with paths resolved.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The image's name.
    pub tag: String,
    /// The context directory.
    pub context: std::path::PathBuf,
    /// The Dockerfile (in the context unless absolute).
    pub dockerfile: std::path::PathBuf,
    /// `args:` (a value from the environment when none is given; left out when unset).
    pub args: BTreeMap<String, String>,
    /// `target:`.
    pub target: Option<String>,
    /// `labels:`.
    pub labels: BTreeMap<String, String>,
    /// `no_cache:`.
    pub no_cache: bool,
    /// `pull:`.
    pub pull: bool,
    /// `network:`.
    pub network: Option<String>,
}

impl Project {
    /// A service by name.
    pub fn service(&self, name: &str) -> Result<&Service, ComposeError> {
        self.model
            .services
            .get(name)
            .ok_or_else(|| ComposeError::Invalid(format!("no such service: {name}")))
    }

    /// Whether a service runs with the active profiles.
    pub fn is_active(&self, service: &Service) -> bool {
        service.profiles.is_empty()
            || self
                .profiles
                .iter()
                .any(|p| p == "*" || service.profiles.contains(p))
    }

    /// The services a command works on, dependencies first: those named (each must exist),
    /// or every active one; with `deps`, what they depend on too.
    pub fn selected(&self, names: &[String], deps: bool) -> Result<Vec<String>, ComposeError> {
        let mut wanted: Vec<&str> = Vec::new();
        if names.is_empty() {
            wanted.extend(
                self.model
                    .services
                    .iter()
                    .filter(|(_, s)| self.is_active(s))
                    .map(|(n, _)| n.as_str()),
            );
        } else {
            for n in names {
                self.service(n)?;
                wanted.push(n);
            }
        }
        let mut order: Vec<String> = Vec::new();
        fn visit(p: &Project, name: &str, deps: bool, order: &mut Vec<String>) {
            if order.iter().any(|n| n == name) {
                return;
            }
            if deps && let Some(s) = p.model.services.get(name) {
                for d in s.dependencies() {
                    visit(p, d, deps, order);
                }
            }
            order.push(name.to_string());
        }
        for n in wanted {
            visit(self, n, deps, &mut order);
        }
        if !deps {
            // Still in dependency order, without adding any.
            let mut all = Vec::new();
            for n in &order {
                visit(self, n, true, &mut all);
            }
            all.retain(|n| order.contains(n));
            return Ok(all);
        }
        Ok(order)
    }

    /// The engine's name of a network of the file: its `name:`, an external one's key, or
    /// `<project>_<key>`.
    pub fn network_name(&self, key: &str) -> String {
        let def = self.model.networks.get(key);
        self.object_name(
            key,
            def.and_then(|d| d.name.as_deref()),
            def.is_some_and(|d| d.external),
        )
    }

    /// The engine's name of a volume of the file (as [`Project::network_name`]).
    pub fn volume_name(&self, key: &str) -> String {
        let def = self.model.volumes.get(key);
        self.object_name(
            key,
            def.and_then(|d| d.name.as_deref()),
            def.is_some_and(|d| d.external),
        )
    }

    fn object_name(&self, key: &str, name: Option<&str>, external: bool) -> String {
        match name {
            Some(name) => name.to_string(),
            None if external => key.to_string(),
            None => format!("{}_{key}", self.name),
        }
    }

    /// The image a service runs: its `image:`, or `<project>-<service>` when built.
    pub fn image_name(&self, service: &str) -> String {
        match self
            .model
            .services
            .get(service)
            .and_then(|s| s.image.clone())
        {
            Some(image) => image,
            None => format!("{}-{service}", self.name),
        }
    }

    /// The name of a service's container number `n`.
    pub fn container_name(&self, service: &str, n: u32) -> String {
        match self
            .model
            .services
            .get(service)
            .and_then(|s| s.container_name.clone())
        {
            Some(name) => name,
            None => format!("{}-{service}-{n}", self.name),
        }
    }

    /// The networks a service's containers join, with their aliases there; none when it
    /// has a `network_mode`. The first is the one they are created on.
    pub fn service_networks(&self, name: &str, service: &Service) -> Vec<(String, Vec<String>)> {
        let mut nets: Vec<(&str, i64)> = service
            .network_keys()
            .into_iter()
            .map(|k| {
                (
                    k,
                    service
                        .networks
                        .get(k)
                        .and_then(|n| n.priority)
                        .unwrap_or(0),
                )
            })
            .collect();
        nets.sort_by_key(|n| std::cmp::Reverse(n.1));
        nets.into_iter()
            .map(|(key, _)| {
                let mut aliases = vec![name.to_string()];
                if let Some(n) = service.networks.get(key) {
                    aliases.extend(n.aliases.iter().cloned());
                }
                (self.network_name(key), aliases)
            })
            .collect()
    }

    /// The file's network keys a set of services uses.
    pub fn networks_used(&self, services: &[String]) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for s in services.iter().filter_map(|n| self.model.services.get(n)) {
            for k in s.network_keys() {
                if !keys.iter().any(|have| have == k) {
                    keys.push(k.to_string());
                }
            }
        }
        keys
    }

    /// The file's volume keys a set of services mounts.
    pub fn volumes_used(&self, services: &[String]) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for name in services {
            let Some(s) = self.model.services.get(name) else {
                continue;
            };
            for v in &s.volumes {
                if v.kind == "volume"
                    && let Some(src) = &v.source
                    && !keys.contains(src)
                {
                    keys.push(src.clone());
                }
            }
        }
        keys
    }

    /// What `build:` asks for, if the service is built.
    pub fn build_spec(&self, name: &str) -> Option<BuildSpec> {
        let service = self.model.services.get(name)?;
        let Build {
            context,
            dockerfile,
            args,
            target,
            labels,
            network,
            no_cache,
            pull,
        } = service.build.clone()?;
        let context = self.dir.join(context);
        let dockerfile = context.join(dockerfile.unwrap_or_else(|| "Dockerfile".into()));
        let args = args
            .into_iter()
            .filter_map(|(k, v)| {
                v.or_else(|| self.environment.get(&k).cloned())
                    .map(|v| (k, v))
            })
            .collect();
        Some(BuildSpec {
            tag: self.image_name(name),
            context,
            dockerfile,
            args,
            target,
            labels: labels.into_iter().collect(),
            no_cache,
            pull,
            network,
        })
    }

    /// A digest of what a service's containers are made from: a container whose label
    /// differs is recreated by `up`. Counts and dependencies do not change a container.
    pub fn config_hash(&self, name: &str) -> String {
        let Some(service) = self.model.services.get(name) else {
            return String::new();
        };
        // The environment as the container gets it (env files and the shell's values).
        let env = service_environment(self, service).unwrap_or_default();
        hash_of(service, &env)
    }

    /// The labels of a service's container.
    fn container_labels(
        &self,
        name: &str,
        number: u32,
        oneoff: bool,
        hash: String,
    ) -> Vec<(String, String)> {
        let files = self
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut labels: Vec<(String, String)> = self
            .model
            .services
            .get(name)
            .map(|s| {
                s.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        labels.extend([
            (PROJECT_LABEL.to_string(), self.name.clone()),
            (SERVICE_LABEL.to_string(), name.to_string()),
            (NUMBER_LABEL.to_string(), number.to_string()),
            (
                ONEOFF_LABEL.to_string(),
                if oneoff { "True" } else { "False" }.to_string(),
            ),
            (CONFIG_HASH_LABEL.to_string(), hash),
            (
                WORKING_DIR_LABEL.to_string(),
                self.dir.display().to_string(),
            ),
            (CONFIG_FILES_LABEL.to_string(), files),
            (VERSION_LABEL.to_string(), COMPOSE_VERSION.to_string()),
        ]);
        labels
    }

    /// The labels of a network or volume the project creates.
    pub fn object_labels(
        &self,
        kind_label: &str,
        key: &str,
        own: &indexmap::IndexMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> =
            own.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(PROJECT_LABEL.into(), self.name.clone());
        labels.insert(kind_label.into(), key.into());
        labels.insert(VERSION_LABEL.into(), COMPOSE_VERSION.into());
        labels
    }

    /// A service's `volumes:` as the engine's mounts, and Docker's `Binds` for them.
    fn service_mounts(&self, s: &Service) -> Result<(Vec<MountRequest>, Vec<String>), String> {
        let mut mounts: Vec<MountRequest> = Vec::new();
        let mut binds = Vec::new();
        for v in &s.volumes {
            let mut m = match v.kind.as_str() {
                "tmpfs" => MountRequest::tmpfs(
                    &v.target,
                    v.tmpfs.as_ref().and_then(|t| t.size).unwrap_or(0),
                ),
                "bind" => {
                    let src = v
                        .source
                        .as_deref()
                        .ok_or_else(|| format!("bind mount at {} has no source", v.target))?;
                    let path = match src.strip_prefix("~/") {
                        Some(rest) => std::path::PathBuf::from(
                            self.environment.get("HOME").cloned().unwrap_or_default(),
                        )
                        .join(rest),
                        None => self.dir.join(src),
                    };
                    let path = clean(&path);
                    let create = v
                        .bind
                        .as_ref()
                        .and_then(|b| b.create_host_path)
                        .unwrap_or(false);
                    let mode = if v.read_only { ":ro" } else { "" };
                    let spec = format!("{}:{}{mode}", path.display(), v.target);
                    let mut m = parse_volume_flag(&spec)?;
                    if !create && !path.exists() {
                        return Err(format!(
                            "bind source path does not exist: {}",
                            path.display()
                        ));
                    }
                    m.create_source = create;
                    if let Some(p) = v.bind.as_ref().and_then(|b| b.propagation.clone()) {
                        m.propagation = p;
                    }
                    binds.push(spec);
                    m
                }
                _ => {
                    let mut m = match &v.source {
                        Some(src) => {
                            let spec = format!("{}:{}", self.volume_name(src), v.target);
                            binds.push(spec.clone());
                            parse_volume_flag(&spec)?
                        }
                        None => parse_volume_flag(&v.target)?,
                    };
                    m.no_copy = v.volume.as_ref().is_some_and(|o| o.nocopy);
                    m
                }
            };
            m.read_only = v.read_only;
            if v.read_only && m.mode.is_empty() {
                m.mode = "ro".into();
            }
            mounts.push(m);
        }
        Ok((mounts, binds))
    }

    /// The create options of container `number` of service `name` (`container_name` set:
    /// the engine's name for it). `network_mode: service:x` needs `x`'s container, which
    /// `peer` finds.
    pub fn create_options(
        &self,
        name: &str,
        container_name: &str,
        number: u32,
        oneoff: bool,
        peer: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CreateOptions, ComposeError> {
        let s = self.service(name)?;
        let invalid = |m: String| ComposeError::Invalid(format!("service {name:?}: {m}"));
        if s.gpus.is_some()
            || s.deploy
                .as_ref()
                .and_then(|d| d.resources.as_ref())
                .and_then(|r| r.reservations.as_ref())
                .is_some_and(|r| !r.devices.is_empty())
        {
            return Err(invalid(
                "device requests (gpus) are not supported by berth yet".into(),
            ));
        }
        let env = service_environment(self, s)?;
        let (mounts, binds) = self.service_mounts(s).map_err(invalid)?;
        let mut port_bindings = PortMap::new();
        for p in &s.ports {
            parse_publish(&p.publish_flag(), &mut port_bindings).map_err(invalid)?;
        }
        let mut expose = Vec::new();
        for e in &s.expose {
            expose.extend(parse_expose(e).map_err(invalid)?);
        }
        let networks = self.service_networks(name, s);
        let network_mode = match s.network_mode.as_deref() {
            Some(m) => match m.strip_prefix("service:") {
                Some(other) => format!(
                    "container:{}",
                    peer(other).ok_or_else(|| invalid(format!(
                        "service {other:?} has no container to share a network with"
                    )))?
                ),
                None => m.to_string(),
            },
            None => networks.first().map(|(n, _)| n.clone()).unwrap_or_default(),
        };
        let restart_policy = match s.restart.as_deref() {
            Some(r) => RestartPolicy::parse(r).map_err(invalid)?,
            None => match s.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
                Some(p) => {
                    let cond = match p.condition.as_deref() {
                        Some("none") => "no",
                        Some("on-failure") => "on-failure",
                        _ => "always",
                    };
                    let mut policy = RestartPolicy::parse(cond).map_err(invalid)?;
                    policy.maximum_retry_count = p.max_attempts.unwrap_or(0);
                    policy
                }
                None => RestartPolicy::default(),
            },
        };
        let limits = s
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let cpus = limits.cpus.or(s.cpus);
        let healthcheck = s.healthcheck.as_ref().map(|h| {
            let ns = |d: &Option<crate::model::Duration>| d.as_ref().map_or(0, |d| d.nanos);
            HealthConfig {
                test: if h.disable {
                    vec!["NONE".into()]
                } else {
                    h.test.clone()
                },
                interval: ns(&h.interval),
                timeout: ns(&h.timeout),
                start_period: ns(&h.start_period),
                start_interval: ns(&h.start_interval),
                retries: h.retries.unwrap_or(0),
            }
        });
        let tmpfs = berth_engine::mounts::tmpfs_flags(&s.tmpfs);
        let host = HostConfig {
            binds,
            port_bindings,
            network_mode,
            restart_policy,
            privileged: s.privileged,
            readonly_rootfs: s.read_only,
            cap_add: s.cap_add.clone(),
            cap_drop: s.cap_drop.clone(),
            security_opt: s.security_opt.clone(),
            group_add: s.group_add.clone(),
            init: s.init,
            tmpfs,
            shm_size: s.shm_size.unwrap_or(0),
            memory: limits.memory.or(s.mem_limit).unwrap_or(0),
            memory_swap: s.memswap_limit.unwrap_or(0),
            nano_cpus: cpus.map_or(0, |c| (c * 1e9) as i64),
            pids_limit: limits.pids.or(s.pids_limit).filter(|p| *p > 0),
            dns: s.dns.clone(),
            extra_hosts: s.extra_hosts.clone(),
            cpu_shares: s.cpu_shares.unwrap_or(0),
            cpuset_cpus: s.cpuset.clone().unwrap_or_default(),
            ulimits: s
                .ulimits
                .iter()
                .map(|(name, l)| berth_engine::Ulimit {
                    name: name.clone(),
                    soft: l.soft,
                    hard: l.hard,
                })
                .collect(),
            log_config: s
                .logging
                .as_ref()
                .map(|l| berth_engine::LogConfig {
                    kind: l.driver.clone().unwrap_or_default(),
                    config: l
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        berth_engine::validate_host_config(&host).map_err(invalid)?;
        // A one-off container does not answer to the service's names.
        let aliases = match networks.first() {
            Some((_, a)) if !oneoff => a.clone(),
            _ => Vec::new(),
        };
        let labels = self.container_labels(name, number, oneoff, hash_of(s, &env));
        Ok(CreateOptions {
            image: self.image_name(name),
            name: Some(container_name.to_string()),
            cmd: s.command.clone().unwrap_or_default(),
            entrypoint: s
                .entrypoint
                .clone()
                .map(|e| if e.is_empty() { vec![String::new()] } else { e }),
            env,
            workdir: s.working_dir.clone(),
            user: s.user.clone(),
            hostname: s.hostname.clone(),
            tty: s.tty,
            interactive: s.stdin_open,
            stdin_once: false,
            labels,
            stop_signal: s.stop_signal.clone(),
            stop_timeout: s
                .stop_grace_period
                .as_ref()
                // Whole seconds, rounded up: 500ms still gives the process time.
                .map(|d| (d.nanos + 999_999_999) / 1_000_000_000),
            attach: false,
            mounts,
            volumes_from: Vec::new(),
            expose,
            network_aliases: aliases,
            healthcheck,
            host,
        })
    }
}

/// [`Project::config_hash`] of a service whose container gets `env`: what does not make a
/// different container (counts, order, how the image is had) is left out.
fn hash_of(service: &Service, env: &[String]) -> String {
    let mut s = service.clone();
    s.scale = None;
    s.depends_on.clear();
    s.profiles.clear();
    s.build = None;
    s.pull_policy = None;
    if let Some(d) = s.deploy.as_mut() {
        d.replicas = None;
    }
    s.environment.clear();
    s.env_file.clear();
    let json = serde_json::to_vec(&(s, env)).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// `a/./b/../c` as `a/c`, without touching the file system.
fn clean(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
