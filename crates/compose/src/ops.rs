//! A project's life on the engine: `up` converges the containers, networks and volumes to
//! the model (recreating only what changed), `down` removes them, and the smaller commands
//! act on the containers a project has. The engine objects are found by Docker Compose's
//! labels, so projects made by `docker compose` (through `berth serve`) are the same.

use std::time::{Duration, Instant};

use berth_engine::{
    ContainerRecord, Engine, EngineError, lifecycle::is_active, monitor, networks::NetworkOptions,
};

use crate::{
    ComposeError, Project,
    model::Condition,
    plan::{
        BuildSpec, CONFIG_HASH_LABEL, NETWORK_LABEL, NUMBER_LABEL, ONEOFF_LABEL, PROJECT_LABEL,
        SERVICE_LABEL, VOLUME_LABEL,
    },
};

/// Where images come from: the CLI pulls and builds with its own progress output.
pub trait Images {
    /// Pulls a service's `image` (for `platform`, when the service names one).
    fn pull(&mut self, service: &str, image: &str, platform: Option<&str>) -> Result<(), String>;
    /// Builds a service's image.
    fn build(&mut self, service: &str, spec: &BuildSpec) -> Result<(), String>;
}

/// A line of progress: ` Container web-1  Started`.
pub type Report<'a> = &'a mut dyn FnMut(&str, &str, &str);

/// The containers of a project (`oneoff`: `compose run`'s too), by service then number.
pub fn containers(
    engine: &mut Engine,
    project: &str,
    oneoff: bool,
) -> Result<Vec<ContainerRecord>, ComposeError> {
    let mut out: Vec<ContainerRecord> = engine
        .containers()?
        .into_iter()
        .filter(|c| c.config.labels.get(PROJECT_LABEL).map(String::as_str) == Some(project))
        .filter(|c| oneoff || c.config.labels.get(ONEOFF_LABEL).map(String::as_str) != Some("True"))
        .collect();
    out.sort_by_key(|c| (service_of(c).to_string(), number_of(c), c.name.clone()));
    Ok(out)
}

/// The service a container runs.
pub fn service_of(c: &ContainerRecord) -> &str {
    c.config
        .labels
        .get(SERVICE_LABEL)
        .map_or("", String::as_str)
}

/// Which of its service's containers it is.
pub fn number_of(c: &ContainerRecord) -> u32 {
    c.config
        .labels
        .get(NUMBER_LABEL)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What `up` is asked.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services named on the command line (none: all active).
    pub services: Vec<String>,
    /// `--no-deps`.
    pub no_deps: bool,
    /// `--force-recreate`.
    pub force_recreate: bool,
    /// `--no-recreate`.
    pub no_recreate: bool,
    /// `--build`.
    pub build: bool,
    /// `--no-build`.
    pub no_build: bool,
    /// `--scale SERVICE=N`.
    pub scale: Vec<(String, u32)>,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// `--no-start`.
    pub no_start: bool,
    /// `-t`: seconds to wait when stopping a container being replaced.
    pub timeout: Option<i64>,
    /// `--pull always|missing|never` over each service's `pull_policy`.
    pub pull: Option<String>,
}

/// `up`: networks, volumes, images, then each service's containers in dependency order,
/// each started once what it depends on is in the state `depends_on` asks for. Returns the
/// containers of the services it brought up.
pub fn up(
    engine: &mut Engine,
    project: &Project,
    opts: &UpOptions,
    images: &mut dyn Images,
    report: Report,
) -> Result<Vec<ContainerRecord>, ComposeError> {
    let services = project.selected(&opts.services, !opts.no_deps)?;
    let existing = containers(engine, &project.name, false)?;
    let orphans: Vec<ContainerRecord> = existing
        .into_iter()
        .filter(|c| !project.model.services.contains_key(service_of(c)))
        .collect();
    remove_orphans(
        engine,
        &orphans,
        opts.remove_orphans,
        opts.timeout,
        false,
        report,
    )?;
    let policy = ImagePolicy {
        build: opts.build,
        no_build: opts.no_build,
        pull: opts.pull.clone(),
    };
    prepare(engine, project, &services, &policy, images, report)?;

    let mut brought_up = Vec::new();
    for name in &services {
        let service = project.service(name)?;
        if !opts.no_start {
            for (dep, d) in &service.depends_on {
                // With --no-deps, only a dependency that is itself being brought up.
                if services.contains(dep) {
                    wait_for_dependency(engine, project, dep, d.condition, d.required, report)?;
                }
            }
        }
        let replicas = opts
            .scale
            .iter()
            .rev()
            .find(|(s, _)| s == name)
            .map_or_else(|| service.replicas(), |(_, n)| *n);
        let hash = project.config_hash(name);
        let image_id = engine
            .store()
            .resolve(&project.image_name(name))
            .map(|r| r.id.to_string())
            .ok();
        let mut current: Vec<ContainerRecord> = containers(engine, &project.name, false)?
            .into_iter()
            .filter(|c| service_of(c) == name)
            .collect();
        // Too many: the highest numbers go.
        while current.len() > replicas as usize {
            let c = current.pop().expect("not empty");
            remove_container(engine, &c, opts.timeout, false, report)?;
        }
        for c in &mut current {
            let stale = c.config.labels.get(CONFIG_HASH_LABEL) != Some(&hash)
                || image_id.as_ref().is_some_and(|id| id != &c.image);
            if (stale || opts.force_recreate) && !opts.no_recreate {
                report("Container", &c.name, "Recreate");
                let number = number_of(c);
                // The old container's anonymous volumes are the new one's (their data
                // stays), as Docker Compose keeps them.
                let kept = anonymous_volumes(engine, c);
                remove_container(engine, c, opts.timeout, false, &mut |_, _, _| {})?;
                let cname = project.container_name(name, number);
                *c = create_named(engine, project, name, &cname, number, false, &|o| {
                    keep_volumes(o, &kept)
                })?;
                report("Container", &c.name, "Recreated");
            } else if is_active(&c.state) {
                report("Container", &c.name, "Running");
            }
        }
        let mut used: Vec<u32> = current.iter().map(number_of).collect();
        while current.len() < replicas as usize {
            let number = (1..).find(|n| !used.contains(n)).expect("a free number");
            used.push(number);
            current.push(create_container(engine, project, name, number, report)?);
        }
        if !opts.no_start {
            for c in &mut current {
                let now = engine.container(&c.id)?;
                if !is_active(&now.state) {
                    report("Container", &c.name, "Starting");
                    monitor::spawn(engine, &c.id, None)
                        .map_err(|e| ComposeError::Failed(e.message))?;
                    report("Container", &c.name, "Started");
                }
                *c = engine.container(&c.id)?;
            }
        }
        brought_up.extend(current);
    }
    Ok(brought_up)
}

/// A container's anonymous volumes, as `(name, destination)`.
fn anonymous_volumes(engine: &mut Engine, c: &ContainerRecord) -> Vec<(String, String)> {
    c.mounts
        .iter()
        .filter(|m| m.kind == "volume")
        .filter(|m| engine.volume(&m.name).is_ok_and(|v| v.is_anonymous()))
        .map(|m| (m.name.clone(), m.destination.clone()))
        .collect()
}

/// Mounts `kept` volumes where a new container would get anonymous ones (or an image's
/// `VOLUME` would).
fn keep_volumes(opts: &mut berth_engine::CreateOptions, kept: &[(String, String)]) {
    for (name, dest) in kept {
        match opts.mounts.iter_mut().find(|m| &m.target == dest) {
            Some(m) if m.kind == berth_engine::mounts::MountKind::Volume && m.source.is_none() => {
                m.source = Some(name.clone());
            }
            Some(_) => {}
            None => {
                if let Ok(m) = berth_engine::mounts::parse_volume_flag(&format!("{name}:{dest}")) {
                    opts.mounts.push(m);
                }
            }
        }
    }
}

fn create_container(
    engine: &mut Engine,
    project: &Project,
    service: &str,
    number: u32,
    report: Report,
) -> Result<ContainerRecord, ComposeError> {
    let name = project.container_name(service, number);
    report("Container", &name, "Creating");
    let rec = create_named(engine, project, service, &name, number, false, &|_| {})?;
    report("Container", &name, "Created");
    Ok(rec)
}

/// Creates a container of `service` named `name` (`adjust` has the last word on its
/// options), joined to every network of the service.
pub fn create_named(
    engine: &mut Engine,
    project: &Project,
    service: &str,
    name: &str,
    number: u32,
    oneoff: bool,
    adjust: &dyn Fn(&mut berth_engine::CreateOptions),
) -> Result<ContainerRecord, ComposeError> {
    // `network_mode: service:x` needs x's container; only then are the records read.
    let shares_network = project
        .service(service)?
        .network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("service:"));
    let peers = if shares_network {
        containers(engine, &project.name, false)?
    } else {
        Vec::new()
    };
    let peer = |other: &str| {
        peers
            .iter()
            .find(|c| service_of(c) == other)
            .map(|c| c.id.clone())
    };
    let mut opts = project.create_options(service, name, number, oneoff, &peer)?;
    adjust(&mut opts);
    let rec = engine.create(&opts)?;
    let svc = project.service(service)?;
    for (network, aliases) in project.service_networks(service, svc).into_iter().skip(1) {
        let aliases = if oneoff { Vec::new() } else { aliases };
        engine.network_connect(&network, &rec.id, &aliases)?;
    }
    Ok(engine.container(&rec.id)?)
}

fn remove_container(
    engine: &mut Engine,
    c: &ContainerRecord,
    timeout: Option<i64>,
    volumes: bool,
    report: Report,
) -> Result<(), ComposeError> {
    if is_active(&engine.container(&c.id)?.state) {
        report("Container", &c.name, "Stopping");
        engine.stop(&c.id, timeout, None)?;
        report("Container", &c.name, "Stopped");
    }
    report("Container", &c.name, "Removing");
    match engine.remove_with_volumes(&c.id, true, volumes) {
        Ok(_) | Err(EngineError::NoSuchContainer(_)) => {}
        Err(e) => return Err(e.into()),
    }
    report("Container", &c.name, "Removed");
    Ok(())
}

/// Containers of services the file no longer has: removed when asked, else Docker
/// Compose's warning.
fn remove_orphans(
    engine: &mut Engine,
    orphans: &[ContainerRecord],
    remove: bool,
    timeout: Option<i64>,
    volumes: bool,
    report: Report,
) -> Result<(), ComposeError> {
    if remove {
        for c in orphans {
            remove_container(engine, c, timeout, volumes, report)?;
        }
    } else if !orphans.is_empty() {
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        report(
            "",
            &format!(
                "Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                names.join(" ")
            ),
            "Warning",
        );
    }
    Ok(())
}

/// What `services` need before a container is made: their images first (a missing one fails
/// the command before anything is created), then their networks and volumes.
pub fn prepare(
    engine: &mut Engine,
    project: &Project,
    services: &[String],
    policy: &ImagePolicy,
    images: &mut dyn Images,
    report: Report,
) -> Result<(), ComposeError> {
    ensure_images(engine, project, services, policy, images)?;
    ensure_networks(engine, project, &project.networks_used(services), report)?;
    ensure_volumes(engine, project, &project.volumes_used(services), report)
}

/// Stops `list`'s running containers, dependents before what they depend on, those at one
/// level of the dependency graph at the same time (each on a thread with an engine of its
/// own), as Docker Compose does: a project of processes that ignore SIGTERM takes one stop
/// timeout per level, not per container.
fn stop_in_levels(
    engine: &mut Engine,
    project: &Project,
    list: &[ContainerRecord],
    timeout: Option<i64>,
    report: Report,
) -> Result<(), ComposeError> {
    // A service's level: 0 when nothing depends on it, else one more than its dependents'.
    fn level(project: &Project, service: &str, seen: &mut Vec<String>) -> usize {
        if seen.iter().any(|s| s == service) {
            return 0;
        }
        seen.push(service.to_string());
        let l = project
            .model
            .services
            .iter()
            .filter(|(_, s)| s.dependencies().contains(&service))
            .map(|(name, _)| level(project, name, seen) + 1)
            .max()
            .unwrap_or(0);
        seen.pop();
        l
    }
    let mut running: Vec<(usize, &ContainerRecord)> = Vec::new();
    // The callers' lists come from `containers()`, which has just reconciled each state.
    for c in list.iter().filter(|c| is_active(&c.state)) {
        running.push((level(project, service_of(c), &mut Vec::new()), c));
    }
    let root = engine.root().to_path_buf();
    let deepest = running.iter().map(|(l, _)| *l).max().unwrap_or(0);
    for l in 0..=deepest {
        let batch: Vec<&ContainerRecord> = running
            .iter()
            .filter(|(x, _)| *x == l)
            .map(|(_, c)| *c)
            .collect();
        for c in &batch {
            report("Container", &c.name, "Stopping");
        }
        let results: Vec<Result<(), ComposeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|c| {
                    let root = &root;
                    scope.spawn(move || -> Result<(), ComposeError> {
                        let mut engine = Engine::open(root)?;
                        match engine.stop(&c.id, timeout, None) {
                            Ok(_) | Err(EngineError::NoSuchContainer(_)) => Ok(()),
                            Err(e) => Err(e.into()),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(ComposeError::Failed("a stop panicked".into())))
                })
                .collect()
        });
        for (c, r) in batch.iter().zip(results) {
            r?;
            report("Container", &c.name, "Stopped");
        }
    }
    Ok(())
}

/// Creates the project's networks among `keys` that do not exist; an external one must.
pub fn ensure_networks(
    engine: &mut Engine,
    project: &Project,
    keys: &[String],
    report: Report,
) -> Result<(), ComposeError> {
    for key in keys {
        let name = project.network_name(key);
        let def = project.model.networks.get(key).cloned().unwrap_or_default();
        if engine.network(&name).is_ok() {
            continue;
        }
        if def.external {
            return Err(ComposeError::Invalid(format!(
                "network {name} declared as external, but could not be found"
            )));
        }
        report("Network", &name, "Creating");
        let ipam = def.ipam.as_ref().and_then(|i| i.config.first());
        let subnet = ipam
            .and_then(|c| c.subnet.as_deref())
            .map(berth_engine::networks::parse_subnet)
            .transpose()?;
        let gateway = ipam
            .and_then(|c| c.gateway.as_deref())
            .map(berth_engine::networks::parse_gateway)
            .transpose()?;
        engine.network_create(&NetworkOptions {
            name: name.clone(),
            driver: def.driver.clone().unwrap_or_default(),
            subnet,
            gateway,
            internal: def.internal,
            labels: project.object_labels(NETWORK_LABEL, key, &def.labels),
        })?;
        report("Network", &name, "Created");
    }
    Ok(())
}

/// Creates the project's volumes among `keys` that do not exist; an external one must.
pub fn ensure_volumes(
    engine: &mut Engine,
    project: &Project,
    keys: &[String],
    report: Report,
) -> Result<(), ComposeError> {
    for key in keys {
        let name = project.volume_name(key);
        let def = project.model.volumes.get(key).cloned().unwrap_or_default();
        if engine.volume(&name).is_ok() {
            continue;
        }
        if def.external {
            return Err(ComposeError::Invalid(format!(
                "external volume {name:?} not found"
            )));
        }
        report("Volume", &format!("\"{name}\""), "Creating");
        engine.volume_create(&berth_engine::VolumeOptions {
            name: Some(name.clone()),
            driver: def.driver.clone().unwrap_or_default(),
            labels: project.object_labels(VOLUME_LABEL, key, &def.labels),
            options: def
                .driver_opts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            anonymous: false,
        })?;
        report("Volume", &format!("\"{name}\""), "Created");
    }
    Ok(())
}

/// How `up` and `run` come by images.
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    /// `--build`: build every built service.
    pub build: bool,
    /// `--no-build`: build none.
    pub no_build: bool,
    /// `--pull`, over the services' `pull_policy`.
    pub pull: Option<String>,
}

/// Builds the services that are built and have no image yet (all of them with `build`),
/// and pulls the images of the others as the pull policy says.
pub fn ensure_images(
    engine: &mut Engine,
    project: &Project,
    services: &[String],
    policy: &ImagePolicy,
    images: &mut dyn Images,
) -> Result<(), ComposeError> {
    for name in services {
        let service = project.service(name)?;
        let image = project.image_name(name);
        let present = engine.store().resolve(&image).is_ok();
        let platform = service.platform.as_deref();
        let pull = policy
            .pull
            .as_deref()
            .or(service.pull_policy.as_deref())
            .unwrap_or("missing");
        if let Some(spec) = project.build_spec(name) {
            let wanted = policy.build || pull == "build" || !present;
            if wanted && !policy.no_build {
                images.build(name, &spec).map_err(ComposeError::Failed)?;
            } else if !present {
                return Err(ComposeError::Failed(format!(
                    "service {name:?} has no image {image} and --no-build was given"
                )));
            }
            continue;
        }
        match pull {
            "always" => images
                .pull(name, &image, platform)
                .map_err(ComposeError::Failed)?,
            "never" if !present => {
                return Err(ComposeError::Failed(format!(
                    "service {name:?}: no such image {image} (pull policy: never)"
                )));
            }
            _ if !present => images
                .pull(name, &image, platform)
                .map_err(ComposeError::Failed)?,
            _ => {}
        }
    }
    Ok(())
}

/// How long `depends_on` and `--wait` wait at most.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits until `dep`'s containers meet `condition` (an optional one's failure is a warning).
pub fn wait_for_dependency(
    engine: &mut Engine,
    project: &Project,
    dep: &str,
    condition: Condition,
    required: bool,
    report: Report,
) -> Result<(), ComposeError> {
    let deps: Vec<ContainerRecord> = containers(engine, &project.name, false)?
        .into_iter()
        .filter(|c| service_of(c) == dep)
        .collect();
    if deps.is_empty() {
        return if required {
            Err(ComposeError::Failed(format!(
                "service {dep:?} has no container to depend on"
            )))
        } else {
            Ok(())
        };
    }
    for c in deps {
        if condition != Condition::ServiceStarted {
            report("Container", &c.name, "Waiting");
        }
        match wait_container(engine, &c.id, condition, DEPENDENCY_TIMEOUT) {
            Ok(()) => {
                if condition != Condition::ServiceStarted {
                    report(
                        "Container",
                        &c.name,
                        if condition == Condition::ServiceHealthy {
                            "Healthy"
                        } else {
                            "Exited"
                        },
                    );
                }
            }
            Err(e) if !required => report(
                "",
                &format!("optional dependency {dep:?} failed: {e}"),
                "Warning",
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a container's record every 100 ms until `done` says it is (or fails), or until
/// `timeout`, when the error says the container did not get to `what` (`"be ready"`);
/// returns the record `done` accepted.
fn poll(
    engine: &mut Engine,
    id: &str,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&ContainerRecord) -> Result<bool, ComposeError>,
) -> Result<ContainerRecord, ComposeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = engine.container(id)?;
        if done(&c)? {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(ComposeError::Failed(format!(
                "timed out waiting for container {} to {what}",
                c.name
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// It ran and ended (not merely created).
fn has_exited(c: &ContainerRecord) -> bool {
    !is_active(&c.state) && c.state.status != "created"
}

fn health_of(c: &ContainerRecord) -> Option<&str> {
    c.state.health.as_ref().map(|h| h.status.as_str())
}

/// Waits until a container meets `condition`.
fn wait_container(
    engine: &mut Engine,
    id: &str,
    condition: Condition,
    timeout: Duration,
) -> Result<(), ComposeError> {
    let failed = |c: &ContainerRecord, why: String| {
        Err(ComposeError::Failed(format!(
            "dependency failed to start: container {} {why}",
            c.name
        )))
    };
    let what = match condition {
        Condition::ServiceStarted => "start",
        Condition::ServiceHealthy => "be healthy",
        Condition::ServiceCompletedSuccessfully => "complete",
    };
    poll(engine, id, timeout, what, |c| match condition {
        Condition::ServiceStarted => Ok(true),
        Condition::ServiceHealthy => match health_of(c) {
            Some("healthy") => Ok(true),
            Some("unhealthy") => failed(c, "is unhealthy".into()),
            None if c.state.running && !has_healthcheck(c) => {
                failed(c, "has no healthcheck configured".into())
            }
            _ if has_exited(c) => failed(c, format!("exited ({})", c.state.exit_code)),
            _ => Ok(false),
        },
        Condition::ServiceCompletedSuccessfully if has_exited(c) && c.state.exit_code != 0 => {
            Err(ComposeError::Failed(format!(
                "service {:?} didn't complete successfully: exit {}",
                service_of(c),
                c.state.exit_code
            )))
        }
        Condition::ServiceCompletedSuccessfully => Ok(has_exited(c)),
    })?;
    Ok(())
}

/// Whether the engine runs a check for it (`["CMD"]` alone or `NONE` is none).
fn has_healthcheck(c: &ContainerRecord) -> bool {
    c.config
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.probe_command().is_some())
}

/// `up --wait`: every container running (healthy when it has a check); a container that
/// exited is fine only with status 0 when another service waits for it to complete.
pub fn wait_ready(
    engine: &mut Engine,
    project: &Project,
    brought_up: &[ContainerRecord],
    timeout: Duration,
    report: Report,
) -> Result<(), ComposeError> {
    let deadline = Instant::now() + timeout;
    for c in brought_up {
        let service = service_of(c).to_string();
        let one_shot = project.model.services.values().any(|s| {
            s.depends_on
                .get(&service)
                .is_some_and(|d| d.condition == Condition::ServiceCompletedSuccessfully)
        });
        report("Container", &c.name, "Waiting");
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll(engine, &c.id, left, "be ready", |now| {
            if has_exited(now) {
                return if one_shot && now.state.exit_code == 0 {
                    Ok(true)
                } else {
                    Err(ComposeError::Failed(format!(
                        "container {} exited ({})",
                        now.name, now.state.exit_code
                    )))
                };
            }
            match health_of(now) {
                Some("unhealthy") => Err(ComposeError::Failed(format!(
                    "container {} is unhealthy",
                    now.name
                ))),
                Some("healthy") => Ok(now.state.running),
                _ => Ok(now.state.running && !has_healthcheck(now)),
            }
        })?;
        let state = match health_of(&ready) {
            _ if has_exited(&ready) => "Exited",
            Some(_) => "Healthy",
            None => "Running",
        };
        report("Container", &c.name, state);
    }
    Ok(())
}

/// What `down` is asked.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// `-v`: named volumes of the file and anonymous ones of the containers.
    pub volumes: bool,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// `--rmi all|local`: the services' images (local: only those built without an
    /// `image:` name).
    pub rmi: Option<String>,
    /// `-t`.
    pub timeout: Option<i64>,
}

/// `down`: the project's containers (dependents first), its networks, and what `opts` adds.
pub fn down(
    engine: &mut Engine,
    project: &Project,
    opts: &DownOptions,
    report: Report,
) -> Result<(), ComposeError> {
    if let Some(rmi) = &opts.rmi
        && !matches!(rmi.as_str(), "all" | "local")
    {
        return Err(ComposeError::Invalid(format!(
            "invalid --rmi option {rmi:?}: expected all or local"
        )));
    }
    let (ours, orphans): (Vec<_>, Vec<_>) = containers(engine, &project.name, true)?
        .into_iter()
        .partition(|c| project.model.services.contains_key(service_of(c)));
    // Dependents stop before what they depend on.
    stop_in_levels(engine, project, &ours, opts.timeout, report)?;
    for c in &ours {
        remove_container(engine, c, opts.timeout, opts.volumes, report)?;
    }
    remove_orphans(
        engine,
        &orphans,
        opts.remove_orphans,
        opts.timeout,
        opts.volumes,
        report,
    )?;
    let mut keys: Vec<String> = project.model.networks.keys().cloned().collect();
    if !keys.iter().any(|k| k == "default") {
        keys.push("default".into());
    }
    for key in keys {
        let def = project
            .model
            .networks
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let name = project.network_name(&key);
        if def.external {
            continue;
        }
        let Ok(net) = engine.network(&name) else {
            continue;
        };
        // Only a network this project made.
        if net.labels.get(PROJECT_LABEL) != Some(&project.name) {
            continue;
        }
        report("Network", &name, "Removing");
        engine.network_remove(&name)?;
        report("Network", &name, "Removed");
    }
    if opts.volumes {
        for (key, def) in &project.model.volumes {
            if def.external {
                continue;
            }
            let name = project.volume_name(key);
            if engine.volume(&name).is_err() {
                continue;
            }
            report("Volume", &name, "Removing");
            engine.volume_remove(&name, false)?;
            report("Volume", &name, "Removed");
        }
    }
    if let Some(rmi) = &opts.rmi {
        let mut seen = Vec::new();
        for (name, s) in &project.model.services {
            if rmi == "local" && s.image.is_some() {
                continue;
            }
            let image = project.image_name(name);
            if seen.contains(&image) || engine.store().resolve(&image).is_err() {
                continue;
            }
            seen.push(image.clone());
            report("Image", &image, "Removing");
            match engine.store().remove_image(&image, false) {
                Ok(_) => report("Image", &image, "Removed"),
                Err(e) => report("", &format!("image {image}: {e}"), "Warning"),
            }
        }
    }
    Ok(())
}

/// The containers of the named services (all when none), dependencies first.
pub fn service_containers(
    engine: &mut Engine,
    project: &Project,
    services: &[String],
) -> Result<Vec<ContainerRecord>, ComposeError> {
    let order = project.selected(services, false)?;
    let mut all = containers(engine, &project.name, false)?;
    all.retain(|c| order.iter().any(|s| s == service_of(c)));
    all.sort_by_key(|c| order.iter().position(|s| s == service_of(c)));
    Ok(all)
}

/// `start`: the services' stopped containers, dependencies first.
pub fn start(
    engine: &mut Engine,
    project: &Project,
    services: &[String],
    report: Report,
) -> Result<(), ComposeError> {
    let all = service_containers(engine, project, services)?;
    if all.is_empty() {
        return Err(ComposeError::Failed(format!(
            "no container to start for {}: run `up` first",
            project.selected(services, false)?.join(", ")
        )));
    }
    for c in all {
        if is_active(&c.state) {
            continue;
        }
        report("Container", &c.name, "Starting");
        monitor::spawn(engine, &c.id, None).map_err(|e| ComposeError::Failed(e.message))?;
        report("Container", &c.name, "Started");
    }
    Ok(())
}

/// `stop`: the services' running containers, dependents first.
pub fn stop(
    engine: &mut Engine,
    project: &Project,
    services: &[String],
    timeout: Option<i64>,
    report: Report,
) -> Result<(), ComposeError> {
    let all = service_containers(engine, project, services)?;
    stop_in_levels(engine, project, &all, timeout, report)
}

/// The container of `service` number `index` (`exec --index`).
pub fn service_container(
    engine: &mut Engine,
    project: &Project,
    service: &str,
    index: u32,
) -> Result<ContainerRecord, ComposeError> {
    project.service(service)?;
    containers(engine, &project.name, false)?
        .into_iter()
        .find(|c| service_of(c) == service && number_of(c) == index)
        .ok_or_else(|| ComposeError::Failed(format!("service {service:?} is not running")))
}
