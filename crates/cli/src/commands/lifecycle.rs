//! Container commands after `run`: `create`, `start`, `ps`, `stop`, `kill`, `restart`,
//! `wait`, `logs`, `attach`, `container prune`, and the hidden monitor command.

use berth_build::metadata::go_quote;
use std::{
    io::{self, Read, Write},
    path::Path,
    thread,
    time::Duration,
};

use anyhow::{Result, anyhow, bail};
use berth_engine::{
    ContainerRecord, Engine, EngineError,
    lifecycle::{is_active, parse_signal},
    logfile::{self, ReadOptions, Stream},
    monitor::{self, AttachRequest, ExitFrame},
    summary::{self, status_text},
};
use berth_runtime::console;
use clap::Args;
use serde::Serialize;

use super::{Status, container::RunArgs, fail};
use crate::{filters::Filters, format, units};

// ---------------------------------------------------------------- create / start

/// `berth create`: the container, not started; prints its ID.
pub fn create(root: &Path, args: RunArgs) -> Result<()> {
    let opts = args.create_options()?;
    let mut engine = Engine::open(root)?;
    let rec = super::registry::create_pulling(
        root,
        &mut engine,
        &opts,
        &args.pull,
        args.platform.as_deref(),
    )?;
    println!("{}", rec.id);
    Ok(())
}

/// `berth start` flags.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth start`.
pub fn start(root: &Path, args: StartArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    if (args.attach || args.interactive) && args.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let mut failed = false;
    for name in &args.containers {
        let rec = match engine.container(name) {
            Ok(rec) => rec,
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
                continue;
            }
        };
        let attach = args.attach || args.interactive;
        if is_active(&rec.state) {
            if attach {
                let code = attach_to(&mut engine, &rec, args.interactive, &args.detach_keys)?;
                return exit_with(code);
            }
        } else {
            let request = AttachRequest {
                stdin: args.interactive && rec.config.open_stdin,
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            match monitor::spawn(&mut engine, &rec.id, attach.then_some(&request)) {
                Ok((rec, Some(conn))) => {
                    let code =
                        attach_session(&mut engine, &rec, conn, request.stdin, &args.detach_keys)?;
                    return exit_with(code);
                }
                Ok(_) => {}
                Err(e) => {
                    if attach {
                        return Err(fail(e.status, e));
                    }
                    eprintln!("Error: {e}");
                    failed = true;
                    continue;
                }
            }
        }
        println!("{name}");
    }
    if failed {
        bail!("failed to start containers: {}", args.containers.join(", "));
    }
    Ok(())
}

/// `-s SIGNAL` of `stop` and `restart`.
fn signal_flag(value: Option<&str>) -> Result<Option<rustix::process::Signal>> {
    value.map(parse_signal).transpose().map_err(|e| anyhow!(e))
}

fn exit_with(code: i32) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Status(code.clamp(0, 255) as u8).into())
    }
}

// ---------------------------------------------------------------- stop / kill / restart / wait

/// `berth stop` flags.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, allow_hyphen_values = true)]
    time: Option<i64>,
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth stop`.
pub fn stop(root: &Path, args: StopArgs) -> Result<()> {
    let signal = signal_flag(args.signal.as_deref())?;
    let mut engine = Engine::open(root)?;
    each(&args.containers, |name| {
        engine.stop(name, args.time, signal).map(|_| ())
    })
}

/// `berth kill` flags.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth kill`.
pub fn kill(root: &Path, args: KillArgs) -> Result<()> {
    let signal = parse_signal(&args.signal).map_err(|e| anyhow!(e))?;
    let mut engine = Engine::open(root)?;
    each(&args.containers, |name| engine.kill(name, signal).map(drop))
}

/// `berth restart` flags.
#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long, allow_hyphen_values = true)]
    time: Option<i64>,
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth restart`: stop, then start under a new monitor.
pub fn restart(root: &Path, args: RestartArgs) -> Result<()> {
    let signal = signal_flag(args.signal.as_deref())?;
    let mut engine = Engine::open(root)?;
    each(&args.containers, |name| {
        let rec = engine.stop(name, args.time, signal)?;
        monitor::spawn(&mut engine, &rec.id, None)
            .map(|_| ())
            .map_err(|e| EngineError::Invalid(e.message))
    })
}

/// `berth wait` flags.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth wait`: blocks until each container stops, then prints its exit code.
pub fn wait(root: &Path, args: WaitArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut failed = false;
    for name in &args.containers {
        let result = engine
            .container(name)
            .and_then(|rec| engine.wait_until_stopped(&rec.id, None));
        match result {
            Ok(rec) => println!("{}", rec.state.exit_code),
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

/// Runs `f` on every container named, printing each name that succeeded and each error,
/// as Docker's commands on several containers do.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<(), EngineError>) -> Result<()> {
    let mut failed = false;
    for name in names {
        match f(name) {
            Ok(()) => println!("{name}"),
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

// ---------------------------------------------------------------- pause / unpause / rename

/// `berth pause` and `berth unpause` flags.
#[derive(Args, Debug)]
pub struct PauseArgs {
    /// CONTAINER...
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `berth pause`: freezes every process of each container (the cgroup freezer).
pub fn pause(root: &Path, args: PauseArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    each(&args.containers, |name| engine.pause(name).map(|_| ()))
}

/// `berth unpause`.
pub fn unpause(root: &Path, args: PauseArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    each(&args.containers, |name| engine.unpause(name).map(|_| ()))
}

/// `berth rename` arguments.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// CONTAINER
    container: String,
    /// NEW_NAME
    new_name: String,
}

/// `berth rename`.
pub fn rename(root: &Path, args: RenameArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    engine.rename(&args.container, &args.new_name)?;
    Ok(())
}

// ---------------------------------------------------------------- logs

/// The flags of `logs` that choose what is read, shared with `compose logs`.
#[derive(Args, Debug)]
pub struct LogFlags {
    /// Follow log output
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub(crate) timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    until: Option<String>,
}

impl LogFlags {
    /// What to read, as of now.
    pub(crate) fn read_options(&self) -> Result<ReadOptions> {
        ReadOptions::from_docker(
            &self.tail,
            self.since.as_deref(),
            self.until.as_deref(),
            jiff::Timestamp::now(),
        )
        .map_err(|e| anyhow!(e))
    }
}

/// `berth logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    log: LogFlags,
    /// Show extra details provided to logs
    #[arg(long)]
    details: bool,
    /// CONTAINER
    container: String,
}

/// `berth logs`.
pub fn logs(root: &Path, args: LogsArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let rec = engine.container(&args.container)?;
    let opts = args.log.read_options()?;
    let stdout = io::stdout();
    let stderr = io::stderr();
    let timestamps = args.log.timestamps;
    let mut emit = |entry: &logfile::LogEntry| -> io::Result<()> {
        let line = entry.shown(timestamps);
        match entry.stream {
            Stream::Stdout => {
                let mut out = stdout.lock();
                out.write_all(&line)?;
                out.flush()
            }
            Stream::Stderr => {
                let mut out = stderr.lock();
                out.write_all(&line)?;
                out.flush()
            }
        }
    };
    let result = engine.read_log(&rec, &opts, args.log.follow, &|| false, &mut emit);
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

// ---------------------------------------------------------------- attach

/// `berth attach` flags.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// CONTAINER
    container: String,
}

/// `berth attach`.
pub fn attach(root: &Path, args: AttachArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let rec = engine.container(&args.container)?;
    if !rec.state.running || rec.state.restarting {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if rec.state.paused {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let stdin = !args.no_stdin && rec.config.open_stdin;
    let code = attach_to(&mut engine, &rec, stdin, &args.detach_keys)?;
    exit_with(code)
}

/// Docker's detach keys: `ctrl-p,ctrl-q` by default; `ctrl-<x>` or single characters.
fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for key in spec.split(',') {
        let key = key.trim();
        if let Some(c) = key.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_alphabetic() => b.to_ascii_lowercase() - b'a' + 1,
                b"@" => 0,
                b"[" => 27,
                b"\\" => 28,
                b"]" => 29,
                b"^" => 30,
                b"_" => 31,
                _ => bail!("Unknown character: '{key}'"),
            };
            keys.push(b);
        } else if key.len() == 1 {
            keys.push(key.as_bytes()[0]);
        } else {
            bail!("Unknown character: '{key}'");
        }
    }
    Ok(keys)
}

/// Attaches this terminal to a running container through its monitor until the container
/// exits (its exit code) or the user detaches (0).
fn attach_to(
    engine: &mut Engine,
    rec: &ContainerRecord,
    stdin: bool,
    detach_keys: &Option<String>,
) -> Result<i32> {
    let request = AttachRequest {
        stdin,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let conn = monitor::attach(&engine.container_dir(&rec.id), &request)
        .map_err(|e| anyhow!("attach to container {}: {e}", &rec.id[..12]))?;
    attach_session(engine, rec, conn, stdin, detach_keys)
}

/// Copies between this terminal and an attached monitor connection.
fn attach_session(
    engine: &mut Engine,
    rec: &ContainerRecord,
    mut conn: std::os::unix::net::UnixStream,
    stdin: bool,
    detach_keys: &Option<String>,
) -> Result<i32> {
    let keys = parse_detach_keys(detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
    let dir = engine.container_dir(&rec.id);
    let tty = rec.config.tty;
    let stdin_is_tty = rustix::termios::isatty(io::stdin());
    let resize = |rows, cols| {
        let request = AttachRequest {
            resize: Some((rows, cols)),
            ..Default::default()
        };
        // A container that ended meanwhile has nothing to resize.
        let _ = monitor::attach(&dir, &request);
    };
    if tty && let Some((rows, cols)) = console::window_size(io::stdout()) {
        resize(rows, cols);
    }
    let _raw = if tty && stdin && stdin_is_tty {
        console::RawMode::enable(io::stdin()).ok()
    } else {
        None
    };
    let (detached_tx, detached_rx) = std::sync::mpsc::channel::<()>();
    if stdin {
        let mut to_container = conn.try_clone()?;
        let shutdown = conn.try_clone()?;
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut matched = 0;
            let mut stdin = io::stdin();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = detached_tx.send(());
                            let _ = shutdown.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        continue;
                    }
                    // A partial match that did not go on is input after all.
                    out.extend_from_slice(&keys[..matched]);
                    matched = 0;
                    out.push(b);
                }
                if !out.is_empty() && to_container.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let mut exit = None;
    while let Ok(Some((kind, payload))) = monitor::read_frame(&mut conn) {
        match kind {
            monitor::FRAME_STDOUT => {
                stdout.write_all(&payload)?;
                stdout.flush()?;
            }
            monitor::FRAME_STDERR => {
                stderr.write_all(&payload)?;
                stderr.flush()?;
            }
            monitor::FRAME_EXIT => {
                exit = serde_json::from_slice::<ExitFrame>(&payload)
                    .ok()
                    .map(|f| f.exit_code);
            }
            _ => {}
        }
    }
    if detached_rx.try_recv().is_ok() {
        return Ok(0);
    }
    match exit {
        Some(code) => Ok(code),
        None => match engine.wait_until_stopped(&rec.id, Some(Duration::from_secs(10))) {
            Ok(rec) => Ok(rec.state.exit_code),
            Err(_) => Ok(0),
        },
    }
}

// ---------------------------------------------------------------- ps

/// Docker's PORTS column: `127.0.0.1:8080->80/tcp` for each published binding, the bare
/// `80/tcp` for an exposed port that is not.
pub(crate) fn ports_column(rec: &ContainerRecord) -> String {
    let mut parts = Vec::new();
    for (port, bindings) in &rec.network_settings.ports {
        match bindings.as_deref() {
            Some(bindings) if !bindings.is_empty() => {
                for b in bindings {
                    let ip = if b.host_ip.contains(':') {
                        format!("[{}]", b.host_ip)
                    } else {
                        b.host_ip.clone()
                    };
                    parts.push(format!("{ip}:{}->{port}", b.host_port));
                }
            }
            _ => parts.push(port.clone()),
        }
    }
    parts.join(", ")
}

/// `berth ps` flags.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_hyphen_values = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
}

/// One row of `ps`, with Docker's field names for `--format`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PsRow {
    command: String,
    created_at: String,
    #[serde(rename = "ID")]
    id: String,
    image: String,
    labels: String,
    local_volumes: String,
    mounts: String,
    names: String,
    networks: String,
    ports: String,
    running_for: String,
    size: String,
    state: String,
    status: String,
}

/// Go's `time.Time.String()` form, as `{{.CreatedAt}}` prints it.
fn go_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

/// `berth ps`.
pub fn ps(root: &Path, args: PsArgs) -> Result<()> {
    let filters = Filters::parse(&args.filter, summary::CONTAINER_FILTERS)?;
    let last = if args.latest { 1 } else { args.last };
    let mut engine = Engine::open(root)?;
    let records = engine.list_containers(&summary::ListOptions {
        all: args.all,
        last: usize::try_from(last).ok().filter(|n| *n > 0),
        filters,
    })?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for rec in &records {
        let state = &rec.state;
        let command = rec.command_line();
        let created = rec.created.parse::<jiff::Timestamp>().unwrap_or(now);
        let size = if args.size {
            format!(
                "{} (virtual {})",
                units::human_size(engine.container_size(&rec.id) as f64),
                units::human_size(image_size(&mut engine, &rec.image) as f64)
            )
        } else {
            String::new()
        };
        rows.push(PsRow {
            command: go_quote(&if args.no_trunc {
                command
            } else {
                units::ellipsis(&command, 20)
            }),
            created_at: go_time(created),
            id: if args.no_trunc {
                rec.id.clone()
            } else {
                rec.id[..12].to_string()
            },
            image: rec.config.image.clone(),
            labels: rec
                .config
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            local_volumes: "0".into(),
            mounts: String::new(),
            names: rec.name.clone(),
            networks: rec
                .network_settings
                .networks
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            ports: ports_column(rec),
            running_for: units::ago(created, now),
            size,
            state: state.status.clone(),
            status: status_text(rec, now),
        });
    }
    let default = if args.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    format::print_list(
        &rows,
        args.quiet,
        |r| &r.id,
        args.format.as_deref(),
        default,
        &[
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Labels", "LABELS"),
            ("LocalVolumes", "LOCAL VOLUMES"),
            ("Mounts", "MOUNTS"),
            ("Names", "NAMES"),
            ("Networks", "NETWORKS"),
            ("Ports", "PORTS"),
            ("RunningFor", "CREATED"),
            ("Size", "SIZE"),
            ("State", "STATE"),
            ("Status", "STATUS"),
        ],
    )?;
    Ok(())
}

fn image_size(engine: &mut Engine, image: &str) -> u64 {
    engine.store().resolve(image).map_or(0, |rec| rec.size)
}

// ---------------------------------------------------------------- prune

/// `berth container prune` flags.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
}

/// `berth container prune`: removes every stopped container.
pub fn prune(root: &Path, args: PruneArgs) -> Result<()> {
    let filters = Filters::parse(&args.filter, berth_engine::CONTAINER_PRUNE_FILTERS)?;
    if !args.force {
        eprint!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let mut engine = Engine::open(root)?;
    let (deleted, reclaimed) = engine.prune_containers(&filters)?;
    let mut out = io::stdout().lock();
    if !deleted.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &deleted {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        units::human_size(reclaimed as f64)
    )?;
    Ok(())
}

// ---------------------------------------------------------------- monitor

/// The hidden `berth container-monitor ID`.
pub fn monitor_main(root: &Path, id: &str, wait_for_attach: bool) -> Result<()> {
    let code = monitor::main(root, id, wait_for_attach);
    if code != 0 {
        return Err(Status(code.clamp(0, 255) as u8).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_column_is_cut_and_quoted_as_docker_does() {
        assert_eq!(
            go_quote(&crate::units::ellipsis("sleep 1000", 20)),
            "\"sleep 1000\""
        );
        assert_eq!(
            go_quote(&crate::units::ellipsis(
                "sh -c 'while true; do echo hi; done'",
                20
            )),
            "\"sh -c 'while true; …\""
        );
    }

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
    }
}
