//! `berth compose`: the command line of compose projects. Loading, planning and the
//! project's life on the engine are `berth-compose`'s; this module parses Docker Compose's
//! flags, pulls and builds images with the CLI's progress views, and prints what the user
//! sees (progress lines on stderr, tables and logs on stdout).

use std::{
    collections::HashMap,
    io::{self, IsTerminal, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, anyhow, bail};
use berth_compose::{
    LoadOptions, Project,
    ops::{self, DownOptions, Images, UpOptions},
    plan::BuildSpec,
};
use berth_engine::{ContainerRecord, Engine, logfile::ReadOptions, summary::status_text};
use clap::{Args, Subcommand};
use tabwriter::TabWriter;

use super::{Status, fail};

/// `berth compose` flags common to every command.
#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file", value_name = "stringArray")]
    file: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "string")]
    project_name: Option<String>,
    /// Specify a profile to enable
    #[arg(long, value_name = "stringArray")]
    profile: Vec<String>,
    /// Specify an alternate environment file
    #[arg(long = "env-file", value_name = "stringArray")]
    env_file: Vec<PathBuf>,
    /// Specify an alternate working directory (default: the path of the first compose file)
    #[arg(long = "project-directory", value_name = "string")]
    project_directory: Option<PathBuf>,
    /// Control when to print ANSI control characters ("never"|"always"|"auto")
    #[arg(long, default_value = "auto")]
    ansi: String,
    #[command(subcommand)]
    command: ComposeCommand,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ComposeCommand {
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks
    Down(DownArgs),
    /// List containers
    Ps(PsArgs),
    /// View output from containers
    Logs(LogsArgs),
    /// Build or rebuild services
    Build(BuildArgs),
    /// Pull service images
    Pull(ServicesQuiet),
    /// Push service images
    Push(ServicesQuiet),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Run a one-off command on a service
    Run(RunArgs),
    /// Start services
    Start(Services),
    /// Stop services
    Stop(StopArgs),
    /// Restart service containers
    Restart(StopArgs),
    /// Removes stopped service containers
    Rm(RmArgs),
    /// Parse, resolve and render compose file in canonical format
    Config(ConfigArgs),
    /// List images used by the created containers
    Images(ServicesQuiet),
    /// Display the running processes
    Top(Services),
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short, long)]
    detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long = "no-build")]
    no_build: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long = "force-recreate")]
    force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long = "no-recreate")]
    no_recreate: bool,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long = "no-start")]
    no_start: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long, value_name = "SERVICE=NUM")]
    scale: Vec<String>,
    /// Wait for services to be running|healthy. Implies detached mode
    #[arg(long)]
    wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long = "wait-timeout", value_name = "int")]
    wait_timeout: Option<u64>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    remove_orphans: bool,
    /// Use this timeout in seconds for container shutdown when attached or when containers are already running
    #[arg(short, long, value_name = "int")]
    timeout: Option<i64>,
    /// Produce monochrome output
    #[arg(long = "no-color")]
    no_color: bool,
    /// Don't print prefix in logs
    #[arg(long = "no-log-prefix")]
    no_log_prefix: bool,
    /// Pull image before running ("always"|"missing"|"never"|"build"; "policy": each
    /// service's pull_policy)
    #[arg(long, default_value = "policy",
          value_parser = ["policy", "always", "missing", "never", "build"])]
    pull: String,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and anonymous volumes attached to containers
    #[arg(short, long)]
    volumes: bool,
    /// Remove images used by services. "local" remove only images that don't have a custom tag ("local"|"all")
    #[arg(long, value_name = "string", value_parser = ["local", "all"])]
    rmi: Option<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short, long, value_name = "int")]
    timeout: Option<i64>,
}

#[derive(Args, Debug)]
struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    all: bool,
    /// Only display IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display services
    #[arg(long)]
    services: bool,
    /// Format the output. Values: [table | json]
    #[arg(long, default_value = "table")]
    format: String,
    #[arg(value_name = "SERVICE")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct LogsArgs {
    #[command(flatten)]
    log: super::lifecycle::LogFlags,
    /// Produce monochrome output
    #[arg(long = "no-color")]
    no_color: bool,
    /// Don't print prefix in logs
    #[arg(long = "no-log-prefix")]
    no_log_prefix: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Don't print anything to STDOUT
    #[arg(short, long)]
    quiet: bool,
    /// Set build-time variables for services
    #[arg(long = "build-arg", value_name = "stringArray")]
    build_arg: Vec<String>,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct ServicesQuiet {
    /// Pull/push without printing progress information; images: only display IDs
    #[arg(short, long)]
    quiet: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct Services {
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short, long, value_name = "int")]
    timeout: Option<i64>,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    volumes: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// Print the service names, one per line
    #[arg(long)]
    services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    volumes: bool,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    quiet: bool,
    /// Format the output. Values: [yaml | json]
    #[arg(long, default_value = "yaml")]
    format: String,
}

#[derive(Args, Debug)]
struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables
    #[arg(short, long)]
    env: Vec<String>,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    index: u32,
    /// Disable pseudo-TTY allocation. By default `docker compose exec` allocates a TTY
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Give extended privileges to the process
    #[arg(long)]
    privileged: bool,
    /// Run the command as this user
    #[arg(short, long)]
    user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long)]
    workdir: Option<String>,
    service: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Set environment variables
    #[arg(short, long)]
    env: Vec<String>,
    /// Override the entrypoint of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    no_deps: bool,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Run as specified username or uid
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    publish: Vec<String>,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(long = "service-ports")]
    service_ports: bool,
    /// Build image before starting container
    #[arg(long)]
    build: bool,
    service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `berth compose`.
pub fn compose(root: &Path, args: ComposeArgs) -> Result<()> {
    let project = load_project(&args)?;
    let color = match args.ansi.as_str() {
        "never" => false,
        "always" => true,
        _ => io::stdout().is_terminal(),
    };
    match args.command {
        ComposeCommand::Up(a) => up(root, &project, a, color),
        ComposeCommand::Down(a) => {
            let mut engine = Engine::open(root)?;
            let opts = DownOptions {
                volumes: a.volumes,
                remove_orphans: a.remove_orphans,
                rmi: a.rmi,
                timeout: a.timeout,
            };
            Ok(ops::down(&mut engine, &project, &opts, &mut report)?)
        }
        ComposeCommand::Ps(a) => ps(root, &project, a),
        ComposeCommand::Logs(a) => {
            let mut engine = Engine::open(root)?;
            let containers = ops::service_containers(&mut engine, &project, &a.services)?;
            let opts = LogView {
                read: a.log.read_options()?,
                follow: a.log.follow,
                timestamps: a.log.timestamps,
                color: color && !a.no_color,
                prefix: !a.no_log_prefix,
            };
            show_logs(root, &project, &containers, &opts, None)
        }
        ComposeCommand::Build(a) => {
            let mut images = CliImages {
                root: root.to_path_buf(),
                quiet: a.quiet,
                no_cache: a.no_cache,
                pull: a.pull,
                build_args: a.build_arg,
            };
            for name in project.selected(&a.services, false)? {
                if let Some(spec) = project.build_spec(&name) {
                    images.build(&name, &spec).map_err(|e| fail(1, e))?;
                }
            }
            Ok(())
        }
        ComposeCommand::Pull(a) => {
            let mut images = CliImages {
                quiet: a.quiet,
                ..CliImages::new(root)
            };
            for name in project.selected(&a.services, false)? {
                let service = project.service(&name)?;
                if service.image.is_none() {
                    continue;
                }
                match images.pull(
                    &name,
                    &project.image_name(&name),
                    service.platform.as_deref(),
                ) {
                    Ok(()) => {}
                    // A service that is also built may have no image in a registry yet.
                    Err(e) if service.build.is_some() => eprintln!("WARN[0000] {name}: {e}"),
                    Err(e) => return Err(fail(1, format!("service {name:?}: {e}"))),
                }
            }
            Ok(())
        }
        ComposeCommand::Push(a) => {
            for name in project.selected(&a.services, false)? {
                let service = project.service(&name)?;
                if service.image.is_none() || service.build.is_none() {
                    continue;
                }
                let args = super::registry::PushArgs {
                    all_tags: false,
                    quiet: a.quiet,
                    disable_content_trust: false,
                    name: project.image_name(&name),
                };
                super::registry::push(root, args)?;
            }
            Ok(())
        }
        ComposeCommand::Exec(a) => {
            let mut engine = Engine::open(root)?;
            let c = ops::service_container(&mut engine, &project, &a.service, a.index)?;
            drop(engine);
            let tty = !a.no_tty && io::stdin().is_terminal() && io::stdout().is_terminal();
            super::exec::exec(
                root,
                super::exec::ExecArgs {
                    detach: a.detach,
                    detach_keys: None,
                    env: a.env,
                    env_file: Vec::new(),
                    interactive: !a.detach,
                    privileged: a.privileged,
                    tty,
                    user: a.user,
                    workdir: a.workdir,
                    container: c.id,
                    command: a.command,
                },
            )
        }
        ComposeCommand::Run(a) => run(root, &project, a),
        ComposeCommand::Start(a) => {
            let mut engine = Engine::open(root)?;
            Ok(ops::start(&mut engine, &project, &a.services, &mut report)?)
        }
        ComposeCommand::Stop(a) => {
            let mut engine = Engine::open(root)?;
            Ok(ops::stop(
                &mut engine,
                &project,
                &a.services,
                a.timeout,
                &mut report,
            )?)
        }
        ComposeCommand::Restart(a) => {
            let mut engine = Engine::open(root)?;
            ops::stop(&mut engine, &project, &a.services, a.timeout, &mut report)?;
            Ok(ops::start(&mut engine, &project, &a.services, &mut report)?)
        }
        ComposeCommand::Rm(a) => {
            let mut engine = Engine::open(root)?;
            if a.stop {
                ops::stop(&mut engine, &project, &a.services, None, &mut report)?;
            }
            let stopped: Vec<ContainerRecord> =
                ops::service_containers(&mut engine, &project, &a.services)?
                    .into_iter()
                    .filter(|c| !berth_engine::lifecycle::is_active(&c.state))
                    .collect();
            if stopped.is_empty() {
                eprintln!("No stopped containers");
                return Ok(());
            }
            if !a.force {
                let names: Vec<&str> = stopped.iter().map(|c| c.name.as_str()).collect();
                if !super::image::confirm(&format!("Going to remove {}", names.join(", ")))? {
                    return Ok(());
                }
            }
            for c in stopped {
                engine.remove_with_volumes(&c.id, false, a.volumes)?;
                report("Container", &c.name, "Removed");
            }
            Ok(())
        }
        ComposeCommand::Config(a) => {
            if a.quiet {
                return Ok(());
            }
            if a.services {
                for name in project.selected(&[], false)? {
                    println!("{name}");
                }
                return Ok(());
            }
            if a.volumes {
                for name in project.model.volumes.keys() {
                    println!("{name}");
                }
                return Ok(());
            }
            let mut model = project.model.clone();
            model.name = Some(project.name.clone());
            model.services.retain(|_, s| project.is_active(s));
            let value = serde_json::to_value(&model)?;
            match a.format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&value)?),
                "yaml" => print!("{}", berth_compose::yaml::to_yaml_text(&value)),
                other => bail!("unsupported format {other:?}: expected yaml or json"),
            }
            Ok(())
        }
        ComposeCommand::Images(a) => images(root, &project, a),
        ComposeCommand::Top(a) => {
            let mut engine = Engine::open(root)?;
            let mut out = io::stdout().lock();
            for c in ops::service_containers(&mut engine, &project, &a.services)? {
                if !c.state.running {
                    continue;
                }
                let table = engine.top(&c.id, "")?;
                writeln!(out, "{}", c.name)?;
                super::procs::write_top(&mut out, &table.titles, &table.processes)?;
                writeln!(out)?;
            }
            Ok(())
        }
    }
}

fn load_project(args: &ComposeArgs) -> Result<Project> {
    let opts = LoadOptions {
        files: args.file.clone(),
        project_name: args.project_name.clone(),
        project_directory: args.project_directory.clone(),
        profiles: args.profile.clone(),
        env_files: args.env_file.clone(),
        working_dir: std::env::current_dir()?,
        environment: std::env::vars().collect::<HashMap<_, _>>(),
    };
    let project = berth_compose::load(&opts)?;
    for w in &project.warnings {
        eprintln!("WARN[0000] {w}");
    }
    Ok(project)
}

/// A progress line as Docker Compose prints it without a terminal: ` Container p-web-1  Started`.
fn report(kind: &str, name: &str, action: &str) {
    if kind.is_empty() {
        eprintln!("WARN[0000] {name}");
    } else {
        eprintln!(" {kind} {name}  {action}");
    }
}

/// Pulls and builds for `up`, `build` and `run`.
struct CliImages {
    root: PathBuf,
    quiet: bool,
    no_cache: bool,
    pull: bool,
    build_args: Vec<String>,
}

impl CliImages {
    /// Pulls and builds as `up` and `run` do them: with progress, the files' options only.
    fn new(root: &Path) -> CliImages {
        CliImages {
            root: root.to_path_buf(),
            quiet: false,
            no_cache: false,
            pull: false,
            build_args: Vec::new(),
        }
    }
}

impl Images for CliImages {
    /// Progress as Docker Compose prints it: ` web Pulling`, ` web Pulled`.
    fn pull(&mut self, service: &str, image: &str, platform: Option<&str>) -> Result<(), String> {
        if !self.quiet {
            eprintln!(" {service} Pulling");
        }
        super::registry::pull_for_run(&self.root, image, platform, true)
            .map_err(|e| format!("{image}: {}", super::one_line(&e)))?;
        if !self.quiet {
            eprintln!(" {service} Pulled");
        }
        Ok(())
    }

    fn build(&mut self, service: &str, spec: &BuildSpec) -> Result<(), String> {
        let mut args = vec![
            "build".to_string(),
            "-t".into(),
            spec.tag.clone(),
            "-f".into(),
            spec.dockerfile.display().to_string(),
        ];
        let mut build_args: Vec<String> =
            spec.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        build_args.extend(self.build_args.iter().cloned());
        for a in build_args {
            args.extend(["--build-arg".into(), a]);
        }
        for (k, v) in &spec.labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        if let Some(t) = &spec.target {
            args.extend(["--target".into(), t.clone()]);
        }
        if let Some(n) = &spec.network {
            args.extend(["--network".into(), n.clone()]);
        }
        if spec.no_cache || self.no_cache {
            args.push("--no-cache".into());
        }
        if spec.pull || self.pull {
            args.push("--pull".into());
        }
        if self.quiet {
            args.push("-q".into());
        }
        args.push(spec.context.display().to_string());
        if !self.quiet {
            eprintln!(" Service {service}  Building");
        }
        #[derive(clap::Parser)]
        struct Build {
            #[command(flatten)]
            args: super::build::BuildArgs,
        }
        let parsed = <Build as clap::Parser>::try_parse_from(&args).map_err(|e| e.to_string())?;
        super::build::build(&self.root, parsed.args).map_err(|e| {
            match e.downcast_ref::<Status>() {
                Some(_) => format!("failed to build service {service:?}"),
                None => format!("service {service:?}: {}", super::one_line(&e)),
            }
        })?;
        if !self.quiet {
            eprintln!(" Service {service}  Built");
        }
        Ok(())
    }
}

fn up(root: &Path, project: &Project, a: UpArgs, color: bool) -> Result<()> {
    let mut scale = Vec::new();
    for s in &a.scale {
        let (name, n) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        let n: u32 = n
            .parse()
            .map_err(|_| anyhow!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        project.service(name)?;
        scale.push((name.to_string(), n));
    }
    if a.build && a.no_build {
        bail!("--build and --no-build are incompatible");
    }
    let opts = UpOptions {
        services: a.services.clone(),
        no_deps: a.no_deps,
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        build: a.build,
        no_build: a.no_build,
        scale,
        remove_orphans: a.remove_orphans,
        no_start: a.no_start,
        timeout: a.timeout,
        pull: (a.pull != "policy").then(|| a.pull.clone()),
    };
    let mut images = CliImages::new(root);
    let mut engine = Engine::open(root)?;
    let brought_up = ops::up(&mut engine, project, &opts, &mut images, &mut report)?;
    if a.wait {
        let timeout = Duration::from_secs(a.wait_timeout.unwrap_or(600));
        ops::wait_ready(&mut engine, project, &brought_up, timeout, &mut report)?;
        return Ok(());
    }
    if a.detach || a.no_start {
        return Ok(());
    }
    // Attached: everyone's output until they all stop; Ctrl-C stops them.
    drop(engine);
    let stop = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C leaves at once (the containers' stops go on without berth).
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let view = LogView {
        read: ReadOptions::default(),
        follow: true,
        timestamps: false,
        color: color && !a.no_color,
        prefix: !a.no_log_prefix,
    };
    // Every service it shows: the named ones and what they depend on.
    let mut services: Vec<String> = Vec::new();
    for c in &brought_up {
        let s = ops::service_of(c).to_string();
        if !services.contains(&s) {
            services.push(s);
        }
    }
    let timeout = a.timeout;
    let stopper = {
        let stop = stop.clone();
        let root = root.to_path_buf();
        let project = project.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            if let Ok(mut engine) = Engine::open(&root)
                && let Err(e) = ops::stop(&mut engine, &project, &services, timeout, &mut report)
            {
                eprintln!("Error: {e}");
            }
        })
    };
    show_logs(root, project, &brought_up, &view, Some(&stop))?;
    if stop.load(Ordering::Relaxed) {
        let _ = stopper.join();
    }
    Ok(())
}

/// How logs are shown.
struct LogView {
    /// Which entries.
    read: ReadOptions,
    follow: bool,
    timestamps: bool,
    color: bool,
    prefix: bool,
}

/// The colours of the prefixes, in Docker Compose's order.
const COLORS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// Each container's log lines with a `web-1  | ` prefix, one thread per container,
/// whole lines at a time; with `follow`, until they all stop (or `stop` is set and they do).
fn show_logs(
    root: &Path,
    project: &Project,
    containers: &[ContainerRecord],
    view: &LogView,
    stop: Option<&Arc<AtomicBool>>,
) -> Result<()> {
    let opts = &view.read;
    let short = |c: &ContainerRecord| {
        c.name
            .strip_prefix(&format!("{}-", project.name))
            .unwrap_or(&c.name)
            .to_string()
    };
    let width = containers.iter().map(|c| short(c).len()).max().unwrap_or(0);
    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for (i, c) in containers.iter().enumerate() {
            let prefix = if !view.prefix {
                String::new()
            } else if view.color {
                format!(
                    "\x1b[{}m{:width$}  |\x1b[0m ",
                    COLORS[i % COLORS.len()],
                    short(c)
                )
            } else {
                format!("{:width$}  | ", short(c))
            };
            let opts = opts.clone();
            handles.push(scope.spawn(move || -> Result<()> {
                let mut engine = Engine::open(root)?;
                let rec = engine.container(&c.id)?;
                let mut emit = |entry: &berth_engine::logfile::LogEntry| -> io::Result<()> {
                    let mut line = prefix.clone().into_bytes();
                    line.extend_from_slice(&entry.shown(view.timestamps));
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut out = io::stdout().lock();
                    out.write_all(&line)?;
                    out.flush()
                };
                match engine.read_log(&rec, &opts, view.follow, &|| false, &mut emit) {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
                    other => Ok(other?),
                }
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow!("a log reader panicked"))??;
        }
        Ok(())
    })?;
    // `up` attached says how each ended (not when Ctrl-C stopped them).
    if let Some(stop) = stop
        && !stop.load(Ordering::Relaxed)
    {
        let mut engine = Engine::open(root)?;
        for c in containers {
            if let Ok(now) = engine.container(&c.id) {
                eprintln!("{} exited with code {}", short(&now), now.state.exit_code);
            }
        }
    }
    Ok(())
}

fn ps(root: &Path, project: &Project, a: PsArgs) -> Result<()> {
    if a.services {
        for name in project.selected(&a.names, false)? {
            println!("{name}");
        }
        return Ok(());
    }
    let mut engine = Engine::open(root)?;
    let wanted = project.selected(&a.names, false)?;
    let all: Vec<ContainerRecord> = ops::containers(&mut engine, &project.name, a.all)?
        .into_iter()
        .filter(|c| a.names.is_empty() || wanted.iter().any(|s| s == ops::service_of(c)))
        .filter(|c| a.all || c.state.running || c.state.restarting)
        .collect();
    if a.quiet {
        for c in &all {
            println!("{}", c.id);
        }
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|c| {
            let created = c.created.parse::<jiff::Timestamp>().ok();
            serde_json::json!({
                "ID": c.id,
                "Name": c.name,
                "Image": c.config.image,
                "Command": berth_build::metadata::go_quote(&super::super::units::ellipsis(&c.command_line(), 20)),
                "Project": project.name,
                "Service": ops::service_of(c),
                "Created": created.map(|t| super::super::units::ago(t, now)).unwrap_or_default(),
                "State": c.state.status,
                "Health": c.state.health.as_ref().map(|h| h.status.clone()).unwrap_or_default(),
                "ExitCode": c.state.exit_code,
                "Status": status_text(c, now),
                "Ports": super::lifecycle::ports_column(c),
            })
        })
        .collect();
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&rows)?);
            Ok(())
        }
        "table" => {
            let mut tw = TabWriter::new(io::stdout().lock()).padding(3).minwidth(0);
            writeln!(tw, "NAME\tIMAGE\tCOMMAND\tSERVICE\tCREATED\tSTATUS\tPORTS")?;
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                writeln!(
                    tw,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s("Name"),
                    s("Image"),
                    s("Command"),
                    s("Service"),
                    s("Created"),
                    s("Status"),
                    s("Ports")
                )?;
            }
            tw.flush()?;
            Ok(())
        }
        other => bail!("unsupported format {other:?}: expected table or json"),
    }
}

fn images(root: &Path, project: &Project, a: ServicesQuiet) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let containers = ops::service_containers(&mut engine, project, &a.services)?;
    let mut tw = TabWriter::new(io::stdout().lock()).padding(3).minwidth(0);
    if !a.quiet {
        writeln!(tw, "CONTAINER\tREPOSITORY\tTAG\tIMAGE ID\tSIZE")?;
    }
    for c in containers {
        let rec = engine.store().resolve(&c.image).ok();
        let id = c.image.strip_prefix("sha256:").unwrap_or(&c.image);
        if a.quiet {
            writeln!(tw, "{id}")?;
            continue;
        }
        let (repo, tag) = match berth_reference::Reference::parse_normalized(&c.config.image) {
            Ok(r) => (r.familiar_name(), r.tag().unwrap_or("latest").to_string()),
            Err(_) => (c.config.image.clone(), String::new()),
        };
        let size = rec
            .map(|r| super::super::units::human_size(r.size as f64))
            .unwrap_or_default();
        writeln!(
            tw,
            "{}\t{repo}\t{tag}\t{}\t{size}",
            c.name,
            &id[..12.min(id.len())]
        )?;
    }
    tw.flush()?;
    Ok(())
}

fn run(root: &Path, project: &Project, a: RunArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let service = project.service(&a.service)?.clone();
    // What it depends on comes up first, as `up` would bring it.
    if !a.no_deps && !service.depends_on.is_empty() {
        let deps: Vec<String> = service.depends_on.keys().cloned().collect();
        let mut images = CliImages::new(root);
        ops::up(
            &mut engine,
            project,
            &UpOptions {
                services: deps,
                ..Default::default()
            },
            &mut images,
            &mut report,
        )?;
        // And is in the state the service waits for.
        for (dep, d) in &service.depends_on {
            ops::wait_for_dependency(
                &mut engine,
                project,
                dep,
                d.condition,
                d.required,
                &mut report,
            )?;
        }
    }
    ops::prepare(
        &mut engine,
        project,
        std::slice::from_ref(&a.service),
        &ops::ImagePolicy {
            build: a.build,
            ..Default::default()
        },
        &mut CliImages::new(root),
        &mut report,
    )?;
    let mut project = project.clone();
    {
        let s = project.model.services.get_mut(&a.service).expect("checked");
        if !a.command.is_empty() {
            s.command = Some(a.command.clone());
        }
        if let Some(e) = &a.entrypoint {
            s.entrypoint =
                Some(shlex::split(e).ok_or_else(|| anyhow!("--entrypoint {e:?}: unclosed quote"))?);
        }
        if let Some(u) = &a.user {
            s.user = Some(u.clone());
        }
        if let Some(w) = &a.workdir {
            s.working_dir = Some(w.clone());
        }
        for e in &a.env {
            match e.split_once('=') {
                Some((k, v)) => s.environment.insert(k.to_string(), Some(v.to_string())),
                None => s.environment.insert(e.clone(), None),
            };
        }
        // A one-off publishes only what it is asked to.
        if !a.service_ports {
            s.ports.clear();
        }
        s.container_name = None;
        s.restart = None;
        if let Some(d) = s.deploy.as_mut() {
            d.restart_policy = None;
            d.replicas = None;
        }
        s.scale = None;
        let tty = !a.no_tty && io::stdin().is_terminal();
        s.tty = tty;
        s.stdin_open = true;
    }
    let suffix: String = berth_engine::new_id()?.chars().take(12).collect();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-run-{suffix}", project.name, a.service));
    for p in &a.publish {
        let port = berth_compose::model::Port::parse(p).map_err(|e| anyhow!(e))?;
        project
            .model
            .services
            .get_mut(&a.service)
            .expect("checked")
            .ports
            .push(port);
    }
    let rm = a.rm;
    let rec = ops::create_named(&mut engine, &project, &a.service, &name, 1, true, &|o| {
        o.host.auto_remove = rm;
    })?;
    if a.detach {
        berth_engine::monitor::spawn(&mut engine, &rec.id, None).map_err(|e| fail(e.status, e))?;
        println!("{}", rec.id);
        return Ok(());
    }
    let tty = rec.config.tty;
    super::container::run_foreground(&mut engine, &rec, a.rm, true, tty)
}
