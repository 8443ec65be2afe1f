//! Container commands: `run`, `rm`, and the container half of `inspect`.

use std::{
    fs, io,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    sync::Arc,
    thread,
};

use anyhow::{Context, Result, anyhow, bail};
use berth_engine::{
    CreateOptions, Engine, EngineError, HostConfig, LogConfig, RestartPolicy, Ulimit,
    logfile::Stream,
    monitor::{self, Hub, Session, Sink},
};
use berth_runtime::console;
use clap::Args;
use serde_json::Value;

use super::Status;
use crate::units;

/// Exit status for berth's own failures around a container, as docker uses it.
const EXIT_ENGINE: u8 = 125;

/// `berth run` flags, Docker's names (`-h` is the hostname, as in docker).
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Automatically remove the container and its resources when it exits
    #[arg(long)]
    rm: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub(crate) pull: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    restart: String,
    /// Logging driver for the container
    #[arg(long = "log-driver", value_name = "string")]
    log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "list")]
    log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "string")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", value_name = "int", allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "duration")]
    health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(
        long = "health-retries",
        value_name = "int",
        allow_hyphen_values = true
    )]
    health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries
    /// countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "duration")]
    health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_name = "duration")]
    health_start_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "duration")]
    health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "list")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "list")]
    group_add: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Mount a tmpfs directory (PATH[:OPTIONS])
    #[arg(long, value_name = "list")]
    tmpfs: Vec<String>,
    /// Bind mount a volume ([NAME|/HOST/PATH:]/CONTAINER/PATH[:ro])
    #[arg(short, long, value_name = "list")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=...,target=...)
    #[arg(long, value_name = "mount")]
    mount: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|rw])
    #[arg(long = "volumes-from", value_name = "list")]
    volumes_from: Vec<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short, long, value_name = "list")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "list")]
    expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "list")]
    add_host: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_name = "bytes")]
    shm_size: Option<String>,
    /// Memory limit
    #[arg(short, long, value_name = "bytes")]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    security_opt: Vec<String>,
    /// Connect a container to a network (bridge, none, host)
    #[arg(long, alias = "net", value_name = "network")]
    network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias", value_name = "list")]
    network_alias: Vec<String>,
    /// Set meta data on a container
    #[arg(short, long, value_name = "list")]
    label: Vec<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long, value_name = "ulimit")]
    ulimit: Vec<String>,
    /// Write the container ID to the file
    #[arg(long, value_name = "string")]
    cidfile: Option<String>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    args: Vec<String>,
}

/// Prints `e` the way berth reports a failed command and returns the status to exit with.
fn fail(code: u8, e: impl std::fmt::Display) -> anyhow::Error {
    eprintln!("berth: Error: {e}");
    Status(code).into()
}

/// `-e KEY` takes KEY from berth's own environment, and is dropped when unset there.
pub(crate) fn env_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        Some(entry.to_string())
    } else {
        std::env::var(entry).ok().map(|v| format!("{entry}={v}"))
    }
}

pub(crate) fn read_env_file(path: &str) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("open {path}"))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let parse = |v: &str| -> Result<i64> {
        v.parse()
            .map_err(|_| anyhow!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = (parse(soft)?, parse(hard)?);
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

fn size_flag(flag: &str, value: &Option<String>) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) if v == "-1" => Ok(-1),
        Some(v) => units::ram_in_bytes(v)
            .map_err(|e| anyhow!("invalid argument {v:?} for \"{flag}\" flag: {e}")),
    }
}

impl RunArgs {
    /// The `--health-*` flags as Docker's `HealthConfig` (`--no-healthcheck`: `NONE`), with
    /// the docker CLI's checks; `None` when none is given (the image's check stands).
    fn healthcheck(&self) -> Result<Option<berth_engine::health::HealthConfig>> {
        let duration = |flag: &str, value: &Option<String>| -> Result<i64> {
            let Some(v) = value else { return Ok(0) };
            let ns = berth_store::parse_go_duration(v).ok_or_else(|| {
                anyhow!(
                    "invalid argument {v:?} for \"--{flag}\" flag: time: invalid duration {v:?}"
                )
            })?;
            if ns < 0 {
                bail!("--{flag} cannot be negative");
            }
            Ok(i64::try_from(ns).unwrap_or(i64::MAX))
        };
        let config = berth_engine::health::HealthConfig {
            test: match &self.health_cmd {
                Some(cmd) if !cmd.is_empty() => vec!["CMD-SHELL".into(), cmd.clone()],
                _ => Vec::new(),
            },
            interval: duration("health-interval", &self.health_interval)?,
            timeout: duration("health-timeout", &self.health_timeout)?,
            start_period: duration("health-start-period", &self.health_start_period)?,
            start_interval: duration("health-start-interval", &self.health_start_interval)?,
            retries: self.health_retries.unwrap_or(0),
        };
        if config.retries < 0 {
            bail!("--health-retries cannot be negative");
        }
        let any = config != berth_engine::health::HealthConfig::default();
        if self.no_healthcheck {
            if any {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(berth_engine::health::HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        Ok(any.then_some(config))
    }

    pub(crate) fn create_options(&self) -> Result<CreateOptions> {
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(read_env_file(f)?);
        }
        env.extend(self.env.iter().filter_map(|e| env_entry(e)));
        let memory = size_flag("--memory", &self.memory)?;
        let memory_swap = size_flag("--memory-swap", &self.memory_swap)?;
        let nano_cpus = match &self.cpus {
            None => 0,
            Some(c) => {
                let v: f64 = c
                    .parse()
                    .map_err(|_| anyhow!("invalid argument {c:?} for \"--cpus\" flag: failed to parse {c} as a rational number"))?;
                (v * 1e9) as i64
            }
        };
        let mut security_opt = Vec::new();
        for opt in &self.security_opt {
            // Docker's CLI sends the profile itself, not its path.
            match opt.split_once(['=', ':']) {
                Some(("seccomp", path)) if path != "unconfined" => {
                    let json = fs::read_to_string(path)
                        .with_context(|| format!("opening seccomp profile ({path}) failed"))?;
                    security_opt.push(format!("seccomp={json}"));
                }
                _ => security_opt.push(opt.clone()),
            }
        }
        let tmpfs = berth_engine::mounts::tmpfs_flags(&self.tmpfs);
        let labels = super::key_values(&self.label, "label")?
            .into_iter()
            .collect();
        let mut mounts = Vec::new();
        for v in &self.volume {
            mounts.push(berth_engine::mounts::parse_volume_flag(v).map_err(|e| anyhow!(e))?);
        }
        for m in &self.mount {
            mounts.push(berth_engine::mounts::parse_mount_flag(m).map_err(|e| anyhow!(e))?);
        }
        let mut port_bindings = berth_engine::ports::PortMap::new();
        for p in &self.publish {
            berth_engine::ports::parse_publish(p, &mut port_bindings).map_err(|e| anyhow!(e))?;
        }
        let mut expose = Vec::new();
        for e in &self.expose {
            expose.extend(berth_engine::ports::parse_expose(e).map_err(|e| anyhow!(e))?);
        }
        let (image, cmd) = self.args.split_first().expect("clap requires IMAGE");
        let restart_policy = RestartPolicy::parse(&self.restart).map_err(|e| anyhow!(e))?;
        let mut log_config = LogConfig::default();
        if let Some(driver) = &self.log_driver {
            log_config.kind = driver.clone();
        }
        for opt in &self.log_opt {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid key value pair format in logging opts"))?;
            log_config.config.insert(k.to_string(), v.to_string());
        }
        let healthcheck = self.healthcheck()?;
        Ok(CreateOptions {
            healthcheck,
            image: image.clone(),
            name: self.name.clone(),
            cmd: cmd.to_vec(),
            entrypoint: self.entrypoint.clone().map(|e| vec![e]),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            interactive: self.interactive,
            stdin_once: self.interactive && !self.detach,
            labels,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            attach: !self.detach,
            mounts,
            volumes_from: self.volumes_from.clone(),
            expose,
            network_aliases: self.network_alias.clone(),
            host: HostConfig {
                binds: self.volume.clone(),
                port_bindings,
                publish_all_ports: self.publish_all,
                dns: self.dns.clone(),
                extra_hosts: self.add_host.clone(),
                network_mode: self.network.clone().unwrap_or_default(),
                auto_remove: self.rm,
                privileged: self.privileged,
                readonly_rootfs: self.read_only,
                cap_add: self.cap_add.clone(),
                cap_drop: self.cap_drop.clone(),
                security_opt,
                group_add: self.group_add.clone(),
                init: self.init.then_some(true),
                tmpfs,
                shm_size: size_flag("--shm-size", &self.shm_size)?.max(0),
                memory,
                memory_swap,
                nano_cpus,
                cpu_shares: self.cpu_shares.unwrap_or(0),
                cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
                pids_limit: self.pids_limit.filter(|l| *l > 0),
                ulimits: self
                    .ulimit
                    .iter()
                    .map(|u| parse_ulimit(u))
                    .collect::<Result<_>>()?,
                restart_policy,
                log_config,
                ..Default::default()
            },
        })
    }
}

fn dup(fd: impl AsFd) -> io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

/// `berth run`: create, start, attach, wait, and exit with the container's status. With
/// `-d`, a monitor process looks after the container and berth prints its ID.
pub fn run(root: &Path, args: RunArgs) -> Result<()> {
    berth_runtime::cgroups::prewarm_attach();
    let opts = args
        .create_options()
        .map_err(|e| fail(EXIT_ENGINE, super::one_line(&e)))?;
    if let Some(path) = &args.cidfile
        && Path::new(path).exists()
    {
        return Err(fail(
            EXIT_ENGINE,
            format!(
                "Container ID file found, make sure the other container isn't running or delete {path}"
            ),
        ));
    }
    let mut engine = Engine::open(root).map_err(|e| fail(EXIT_ENGINE, e))?;
    let rec = super::registry::create_pulling(
        root,
        &mut engine,
        &opts,
        &args.pull,
        args.platform.as_deref(),
    )
    .map_err(|e| fail(EXIT_ENGINE, super::one_line(&e)))?;
    if let Some(path) = &args.cidfile {
        fs::write(path, &rec.id).map_err(|e| {
            fail(
                EXIT_ENGINE,
                format!("failed to write the container ID to the file: {e}"),
            )
        })?;
    }
    if args.detach {
        return match monitor::spawn(&mut engine, &rec.id, None) {
            Ok(_) => {
                println!("{}", rec.id);
                Ok(())
            }
            Err(e) => Err(fail(e.status, e)),
        };
    }
    run_foreground(&mut engine, &rec, args.rm, args.interactive, args.tty)
}

/// Starts a created container with this process's stdio as its own, waits for it and exits
/// with its status (`run` without `-d`, `compose run`); `rm` removes it at the end.
pub(crate) fn run_foreground(
    engine: &mut Engine,
    rec: &berth_engine::ContainerRecord,
    rm: bool,
    interactive: bool,
    tty: bool,
) -> Result<()> {
    let remove = |engine: &mut Engine| {
        if rm && let Err(e) = engine.remove(&rec.id, true) {
            eprintln!("berth: Error: removing container {}: {e}", &rec.id[..12]);
        }
    };
    let lock = match monitor::lock_for_foreground(engine, &rec.id) {
        Ok(lock) => lock,
        Err(e) => return Err(fail(EXIT_ENGINE, e)),
    };

    let Foreground {
        hub,
        stdin,
        console_size,
        feed_stdin,
        raw_mode,
    } = Foreground::new(interactive, tty)?;
    // Installed before the start, so that a Ctrl-C from here on reaches the container
    // instead of killing berth (and, through its death signal, the container unrecorded).
    let signals = match signal_handlers() {
        Ok(s) => s,
        Err(e) => {
            remove(engine);
            return Err(fail(EXIT_ENGINE, e));
        }
    };
    let ports = match monitor::PublishedPorts::bind(rec) {
        Ok(p) => p,
        Err(e) => {
            drop(lock);
            remove(engine);
            return Err(fail(EXIT_ENGINE, e));
        }
    };
    let session = match Session::start(engine, &rec.id, &hub, stdin, console_size) {
        Ok(s) => s,
        Err(e) => {
            let code = monitor::exit_status_for(&e);
            drop(lock);
            remove(engine);
            return Err(fail(code, e));
        }
    };
    let pid = session.pid();
    if let Err(e) = ports.running(engine, &rec.id, session.address()) {
        eprintln!("berth: Error: {e}");
    }
    // The container runs: no early return from here on, or it would go unrecorded.
    let raw_mode = raw_mode.then(|| console::RawMode::enable(io::stdin()).ok());
    if feed_stdin {
        feed(hub.clone());
    }
    forward_signals(signals, pid, tty.then(|| hub.clone()));

    let health = berth_engine::health::HealthMonitor::start(engine.root(), rec);
    let waited = session.wait();
    drop(health);
    drop(raw_mode);
    let (started, exit) = waited.map_err(|e| fail(EXIT_ENGINE, e))?;
    let finished = if rm {
        engine.finish_and_remove(started, &exit)
    } else {
        engine.finish(started, exit)
    };
    drop(lock);
    finished.map_err(|e| fail(EXIT_ENGINE, e))?;
    if exit.code != 0 {
        return Err(Status(exit.code.clamp(0, 255) as u8).into());
    }
    Ok(())
}

/// A foreground `run` or `exec`: this process's stdio is the container process's.
pub(crate) struct Foreground {
    /// Its output goes to this process's stdout and stderr.
    pub hub: Arc<Hub>,
    /// Its stdin as it is (piped input, or /dev/null), when not fed through the hub.
    pub stdin: Option<OwnedFd>,
    /// Its pty's size (with -t).
    pub console_size: Option<(u16, u16)>,
    /// This process's stdin is to be fed through the hub ([`feed`]).
    pub feed_stdin: bool,
    /// This terminal is to be put in raw mode once the process runs.
    pub raw_mode: bool,
}

impl Foreground {
    /// With -t the process's stdio is its pty, and with -i on a terminal its input goes
    /// through this process (the process must not read berth's terminal from another process
    /// group); piped input is handed over as it is.
    pub(crate) fn new(interactive: bool, tty: bool) -> io::Result<Foreground> {
        let stdin_is_tty = rustix::termios::isatty(io::stdin());
        let feed_stdin = interactive && (tty || stdin_is_tty);
        let stdin: Option<OwnedFd> = if tty || feed_stdin {
            None
        } else if interactive {
            Some(dup(io::stdin())?)
        } else {
            Some(fs::File::open("/dev/null")?.into())
        };
        let console_size = if tty {
            console::window_size(io::stdout()).or_else(|| console::window_size(io::stdin()))
        } else {
            None
        };
        let hub = Hub::new();
        hub.add(Sink::Local {
            stream: Stream::Stdout,
            out: Box::new(io::stdout()),
        });
        hub.add(Sink::Local {
            stream: Stream::Stderr,
            out: Box::new(io::stderr()),
        });
        Ok(Foreground {
            hub,
            stdin,
            console_size,
            feed_stdin,
            raw_mode: tty && interactive && stdin_is_tty,
        })
    }
}

/// Copies this process's stdin to the container process's until either ends.
pub(crate) fn feed(hub: Arc<Hub>) {
    thread::spawn(move || hub.feed_stdin(io::stdin(), true));
}

/// The signals `berth run` passes on to the container (docker's `--sig-proxy`), and SIGWINCH.
fn signal_handlers() -> io::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::signal::*;
    signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM,
    ])
}

/// Passes the signals berth receives on to the container, and with a tty, window size
/// changes to the pty.
fn forward_signals(mut signals: signal_hook::iterator::Signals, pid: i32, tty: Option<Arc<Hub>>) {
    use signal_hook::consts::signal::SIGWINCH;
    thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGWINCH {
                if let Some(hub) = &tty
                    && let Some((rows, cols)) = console::window_size(io::stdin())
                {
                    hub.resize(rows, cols);
                }
                continue;
            }
            if let Some(signal) = rustix::process::Signal::from_named_raw(sig)
                && let Some(p) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(p, signal);
            }
        }
    });
}

/// `berth rm` flags.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth rm`.
pub fn remove(root: &Path, args: RemoveArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut failed = false;
    for name in &args.containers {
        match engine.remove_with_volumes(name, args.force, args.volumes) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Status(1).into());
    }
    Ok(())
}

/// The `inspect` document of the container `key` names, if one does.
pub fn inspect_document(root: &Path, key: &str) -> Result<Option<Value>> {
    let mut engine = Engine::open(root)?;
    match engine.inspect_container(key) {
        Ok(doc) => Ok(Some(doc)),
        Err(EngineError::NoSuchContainer(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
