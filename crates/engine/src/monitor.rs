//! The monitor: the process that looks after one container while it runs. `berth run -d`
//! and `berth start` start one (berth re-executed as `berth container-monitor ID`, in its own
//! session, detached from the CLI); a foreground `berth run` is its own monitor. It holds the
//! container's lock ([`crate::lifecycle`]), owns the container's stdio or pty, writes the
//! json-file log, serves `attach` on `attach.sock` in the container's directory, reaps the
//! container, records how it ended, and applies `--rm` and `--restart`.
//!
//! The attach protocol (berth talking to itself): the client sends one JSON line, then
//! reads frames: a header of 8 bytes (stream type, three zero bytes, payload length as a
//! big-endian u32, as Docker's multiplexed streams) and the payload. Stream 1 is stdout
//! (all of a pty's output), 2 stderr, and 3 the container's end as JSON (`{"ExitCode":0}`),
//! sent once after the end is recorded. What the client writes after its request line goes
//! to the container's stdin.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use berth_runtime::{Exit, Stdio, console};
use serde::{Deserialize, Serialize};

use crate::{
    ContainerRecord, Engine, EngineError, Started,
    lifecycle::ContainerLock,
    logfile::{LogConfig, LogWriter, Stream},
};

/// The hidden berth command that runs a monitor.
pub const MONITOR_COMMAND: &str = "container-monitor";

/// The attach socket's name in the container's directory.
pub const ATTACH_SOCKET: &str = "attach.sock";

/// Frame types on the attach socket.
pub const FRAME_STDOUT: u8 = 1;
/// See [`FRAME_STDOUT`].
pub const FRAME_STDERR: u8 = 2;
/// See [`FRAME_STDOUT`].
pub const FRAME_EXIT: u8 = 3;

/// What an attach client asks for (the first line it sends).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Feed the client's input to the container's stdin.
    #[serde(default)]
    pub stdin: bool,
    /// Send stdout (and a pty's output).
    #[serde(default)]
    pub stdout: bool,
    /// Send stderr.
    #[serde(default)]
    pub stderr: bool,
    /// Close the container's stdin when this client's input ends (the container's
    /// `StdinOnce`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_stdin: bool,
    /// Resize the container's pty instead (rows, columns), then hang up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<(u16, u16)>,
}

/// The container's end, as the last frame tells attached clients.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExitFrame {
    /// The container's exit code.
    pub exit_code: i32,
}

/// What the monitor tells the process that started it, as one JSON line.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ready {
    /// The attach socket listens (with [`WAIT_FOR_ATTACH`]); the start follows.
    #[serde(default)]
    listening: bool,
    #[serde(default)]
    error: Option<String>,
    /// berth's exit status for the failure (125, or 126/127 for a command that cannot run).
    #[serde(default)]
    status: u8,
}

/// Starts the container `key` names under a new monitor process and returns once its
/// command runs, or with the reason it could not start. With `attach`, the returned socket
/// is attached as asked before the container starts, so it misses none of its output.
///
/// A `--rm` container that cannot start is removed, as dockerd does (`run -d --rm`,
/// `start`, and the Engine API's `docker run --rm`, which waits for the removal).
pub fn spawn(
    engine: &mut Engine,
    key: &str,
    attach: Option<&AttachRequest>,
) -> Result<(ContainerRecord, Option<UnixStream>), SpawnError> {
    let rec = engine.container(key).map_err(SpawnError::engine)?;
    let spawned = spawn_monitor(engine, &rec, attach);
    if spawned.is_err()
        && rec.host_config.auto_remove
        // Not when the failure is that it runs already.
        && engine
            .container(&rec.id)
            .is_ok_and(|now| !crate::lifecycle::is_active(&now.state))
        && let Err(e) = engine.remove(&rec.id, true)
    {
        tracing::warn!("removing container {}: {e}", rec.id);
    }
    spawned
}

fn spawn_monitor(
    engine: &mut Engine,
    rec: &ContainerRecord,
    attach: Option<&AttachRequest>,
) -> Result<(ContainerRecord, Option<UnixStream>), SpawnError> {
    if rec.has_been_manually_stopped {
        // A start by the user: the restart policy applies again.
        engine
            .set_manually_stopped(&rec.id, false)
            .map_err(SpawnError::engine)?;
    }
    let (reader, writer) = io::pipe().map_err(|e| SpawnError::engine(host("pipe", e)))?;
    let child = {
        let mut cmd = Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut cmd, "berth");
        cmd.arg("--root")
            .arg(engine.root())
            .arg(MONITOR_COMMAND)
            .arg(&rec.id);
        if attach.is_some() {
            cmd.arg(WAIT_FOR_ATTACH);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::null());
        cmd.spawn()
            .map_err(|e| SpawnError::engine(host("start the container's monitor", e)))?
    };
    reap_in_background(child);
    let mut reader = BufReader::new(reader);
    let mut conn = None;
    if let Some(request) = attach {
        match read_ready(&mut reader)? {
            Ready {
                listening: true, ..
            } => {}
            other => return Err(other.into_error()),
        }
        let stream = self::attach(&engine.container_dir(&rec.id), request)
            .map_err(|e| SpawnError::engine(host("attach to the container", e)))?;
        conn = Some(stream);
    }
    let ready = read_ready(&mut reader)?;
    if ready.error.is_some() {
        return Err(ready.into_error());
    }
    let rec = engine.container(&rec.id).map_err(SpawnError::engine)?;
    Ok((rec, conn))
}

/// Waits for a monitor on a small thread of its own: a CLI exits long before (and the
/// monitor is reparented), but a long-lived process (`berth serve`) would otherwise keep a
/// zombie per container it ever started.
fn reap_in_background(mut child: std::process::Child) {
    let spawned = thread::Builder::new()
        .name("monitor-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot wait for the container's monitor: {e}");
    }
}

/// The monitor's argument that makes it wait for an attach client before the start.
pub const WAIT_FOR_ATTACH: &str = "--wait-for-attach";

fn read_ready(reader: &mut impl BufRead) -> Result<Ready, SpawnError> {
    let mut text = String::new();
    match reader.read_line(&mut text) {
        Ok(n) if n > 0 => serde_json::from_str(&text).map_err(|e| {
            SpawnError::engine(EngineError::Invalid(format!(
                "the container's monitor answered {text:?}: {e}"
            )))
        }),
        _ => Err(SpawnError::engine(EngineError::Invalid(
            "the container's monitor exited before the container started".into(),
        ))),
    }
}

impl Ready {
    fn into_error(self) -> SpawnError {
        SpawnError {
            message: self
                .error
                .unwrap_or_else(|| "the container's monitor answered out of turn".into()),
            status: if self.status == 0 { 125 } else { self.status },
        }
    }
}

/// Why a monitor could not start its container, and berth's exit status for it.
#[derive(Debug)]
pub struct SpawnError {
    /// One line.
    pub message: String,
    /// 125, or 126/127 when the command could not be run.
    pub status: u8,
}

impl SpawnError {
    fn engine(e: EngineError) -> SpawnError {
        SpawnError {
            status: exit_status_for(&e),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpawnError {}

/// berth's exit status for an error starting a container: 126 or 127 when its command
/// cannot be run or is not found, 125 otherwise (Docker's).
pub fn exit_status_for(e: &EngineError) -> u8 {
    match e {
        EngineError::Runtime(berth_runtime::RuntimeError::Exec { failure, .. }) => {
            failure.exit_code()
        }
        _ => 125,
    }
}

fn host(what: &str, e: io::Error) -> EngineError {
    EngineError::Io {
        what: what.to_string(),
        source: e,
    }
}

/// The monitor process: `berth container-monitor ID [--wait-for-attach]`. Its stdout is the
/// pipe to the process that started it. Returns the process's exit status.
pub fn main(root: &Path, id: &str, wait_for_attach: bool) -> i32 {
    // Its own session: the terminal the CLI ran in and its signals are not the monitor's.
    let _ = rustix::process::setsid();
    // Started as /proc/self/exe, it would show as `exe` in `ps` and `top`.
    let _ = rustix::thread::set_name(c"berth-monitor");
    let mut ready = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Some(File::from(fd)),
        Err(_) => return 1,
    };
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    match monitor(root, id, &mut ready, wait_for_attach) {
        Ok(()) => 0,
        Err(e) => {
            if let Some(mut pipe) = ready.take() {
                let line = serde_json::to_string(&Ready {
                    status: exit_status_for(&e),
                    error: Some(e.to_string()),
                    ..Default::default()
                })
                .unwrap_or_default();
                let _ = writeln!(pipe, "{line}");
            }
            1
        }
    }
}

fn monitor(
    root: &Path,
    id: &str,
    ready: &mut Option<File>,
    wait_for_attach: bool,
) -> Result<(), EngineError> {
    let mut engine = Engine::open(root)?;
    let rec = engine.record(id)?;
    let Some(_lock) = engine.try_lock(&rec.id)? else {
        return Err(EngineError::Invalid(format!(
            "container {} is already running",
            rec.id
        )));
    };
    let hub = Hub::new();
    let _server = AttachServer::start(&engine.container_dir(&rec.id), hub.clone())?;
    if wait_for_attach && let Some(pipe) = ready.as_mut() {
        let line = serde_json::to_string(&Ready {
            listening: true,
            ..Default::default()
        })
        .unwrap_or_default();
        let _ = writeln!(pipe, "{line}");
        // The client that asked connects at once; give up on it after a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.clients() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let ports = PublishedPorts::bind(&rec)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = Session::start(&mut engine, id, &hub, None, None)?;
        ports.running(&mut engine, id, session.address())?;
        if let Some(mut pipe) = ready.take() {
            let _ = writeln!(
                pipe,
                "{}",
                serde_json::to_string(&Ready::default()).unwrap_or_default()
            );
        }
        let began = Instant::now();
        // The record read at the top: a container's check does not change after create.
        let health = crate::health::HealthMonitor::start(root, &rec);
        let waited = session.wait();
        drop(health);
        let (started, exit) = waited?;
        ports.stopped();
        let rec = engine.record(id)?;
        if rec.host_config.auto_remove {
            // Clients hear the end before the removal: once the record is gone, a waiter
            // (`wait?condition=removed`) has nothing else to read the code from.
            hub.end(exit.code);
            return engine.finish_and_remove(started, &exit);
        }
        engine.finish(started, exit)?;
        hub.end(exit.code);
        let mut rec = engine.record(id)?;
        let policy = &rec.host_config.restart_policy;
        if !policy.restarts(exit.code, rec.restart_count, rec.has_been_manually_stopped) {
            return Ok(());
        }
        // Docker's back-off: doubled on every restart, back to the start after a run of
        // ten seconds or more.
        if began.elapsed() >= Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        rec.state.status = "restarting".into();
        rec.state.restarting = true;
        rec.state.running = true;
        engine.set_state(id, &rec.state)?;
        let until = Instant::now() + backoff;
        loop {
            let now = engine.record(id)?;
            if now.has_been_manually_stopped {
                let mut state = now.state;
                state.status = "exited".into();
                state.restarting = false;
                state.running = false;
                engine.set_state(id, &state)?;
                return Ok(());
            }
            if Instant::now() >= until {
                break;
            }
            thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
        engine.set_restart_count(id, rec.restart_count + 1)?;
    }
}

/// A container's published ports, served by the process that looks after it for as long as
/// it does (across restarts).
pub struct PublishedPorts {
    target: Option<crate::ports::Target>,
    bound: crate::ports::PortMap,
}

impl PublishedPorts {
    /// Binds the host ports of `rec`'s `-p`/`-P` and starts serving them.
    pub fn bind(rec: &ContainerRecord) -> Result<PublishedPorts, EngineError> {
        if rec.host_config.port_bindings.is_empty() {
            return Ok(PublishedPorts {
                target: None,
                bound: Default::default(),
            });
        }
        let proxy = crate::ports::PortProxy::bind(&rec.host_config.port_bindings)?;
        let target = proxy.target();
        let bound = proxy.bound.clone();
        proxy.serve();
        Ok(PublishedPorts {
            target: Some(target),
            bound,
        })
    }

    /// The container runs at `address`: traffic goes there, and its record shows the ports.
    pub fn running(
        &self,
        engine: &mut Engine,
        id: &str,
        address: Option<std::net::Ipv4Addr>,
    ) -> Result<(), EngineError> {
        if let Some(target) = &self.target {
            *target.lock().expect("lock") = address;
            engine.set_published_ports(id, &self.bound)?;
        }
        Ok(())
    }

    /// The container stopped: connections are refused until it runs again.
    pub fn stopped(&self) {
        if let Some(target) = &self.target {
            *target.lock().expect("lock") = None;
        }
    }
}

/// Holding a container's lock while it runs in the foreground.
pub fn lock_for_foreground(engine: &Engine, id: &str) -> Result<ContainerLock, EngineError> {
    engine
        .try_lock(id)?
        .ok_or_else(|| EngineError::Invalid(format!("container {id} is already running")))
}

/// One run of a container (or of an exec's process): its output pumped into the log and to
/// whoever is attached.
pub struct Session<P = Started> {
    pub(crate) process: P,
    pub(crate) hub: Arc<Hub>,
    pub(crate) pumps: Vec<JoinHandle<()>>,
}

impl<P> Session<P> {
    /// Joins the pumps once the process has ended: all its output is delivered.
    pub(crate) fn drain(&mut self) {
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
        *self.hub.stdin.lock().expect("lock") = None;
        *self.hub.console.lock().expect("lock") = None;
    }
}

/// The pipes between a process and its session, made before the process starts.
pub(crate) struct Plumbing {
    outputs: Vec<(File, Stream)>,
    stdin_writer: Option<File>,
}

impl Plumbing {
    /// The process's stdio: with `tty`, /dev/null (its pty replaces it); otherwise `stdin`
    /// as it is, or a pipe the session feeds when `open_stdin`, or /dev/null; and pipes for
    /// stdout and stderr.
    pub(crate) fn new(
        tty: bool,
        stdin: Option<OwnedFd>,
        open_stdin: bool,
    ) -> Result<(Plumbing, Stdio), EngineError> {
        let null = || -> Result<OwnedFd, EngineError> {
            Ok(File::open("/dev/null")
                .map_err(|e| host("open /dev/null", e))?
                .into())
        };
        let mut plumbing = Plumbing {
            outputs: Vec::new(),
            stdin_writer: None,
        };
        if tty {
            let stdio = Stdio {
                stdin: null()?,
                stdout: null()?,
                stderr: null()?,
            };
            return Ok((plumbing, stdio));
        }
        let stdin = match stdin {
            Some(fd) => fd,
            None if open_stdin => {
                let (r, w) = io::pipe().map_err(|e| host("pipe", e))?;
                plumbing.stdin_writer = Some(File::from(OwnedFd::from(w)));
                r.into()
            }
            None => null()?,
        };
        let (out_r, out_w) = io::pipe().map_err(|e| host("pipe", e))?;
        let (err_r, err_w) = io::pipe().map_err(|e| host("pipe", e))?;
        plumbing
            .outputs
            .push((File::from(OwnedFd::from(out_r)), Stream::Stdout));
        plumbing
            .outputs
            .push((File::from(OwnedFd::from(err_r)), Stream::Stderr));
        let stdio = Stdio {
            stdin,
            stdout: out_w.into(),
            stderr: err_w.into(),
        };
        Ok((plumbing, stdio))
    }

    /// Once the process runs: its pty (`console`), when it has one, is its output and, with
    /// `open_stdin`, its input; a thread per output pumps it into `hub`.
    pub(crate) fn connect(
        mut self,
        hub: &Arc<Hub>,
        console: Option<OwnedFd>,
        open_stdin: bool,
    ) -> Result<Vec<JoinHandle<()>>, EngineError> {
        if let Some(master) = console {
            let reader = master
                .try_clone()
                .map_err(|e| host("duplicate the pty", e))?;
            self.outputs.push((File::from(reader), Stream::Stdout));
            if open_stdin {
                self.stdin_writer = Some(File::from(
                    master
                        .try_clone()
                        .map_err(|e| host("duplicate the pty", e))?,
                ));
            }
            *hub.console.lock().expect("lock") = Some(master);
        }
        *hub.stdin.lock().expect("lock") = self.stdin_writer;
        Ok(self
            .outputs
            .into_iter()
            .map(|(from, stream)| {
                let hub = hub.clone();
                thread::spawn(move || pump(from, stream, &hub))
            })
            .collect())
    }
}

impl Session {
    /// Starts the container with pipes (or its pty) that the session reads. `stdin`, when
    /// given, is the container's stdin as it is (a foreground `run -i` passes its own);
    /// otherwise a container with `OpenStdin` gets a pipe fed by attached clients.
    pub fn start(
        engine: &mut Engine,
        id: &str,
        hub: &Arc<Hub>,
        stdin: Option<OwnedFd>,
        console_size: Option<(u16, u16)>,
    ) -> Result<Session, EngineError> {
        let rec = engine.record(id)?;
        let log = open_log(&rec)?;
        let open_stdin = rec.config.open_stdin;
        let (plumbing, stdio) = Plumbing::new(rec.config.tty, stdin, open_stdin)?;
        let mut started = engine.start(rec, stdio, console_size)?;
        hub.state.lock().expect("lock").log = log;
        let pumps = plumbing.connect(hub, started.take_console(), open_stdin)?;
        Ok(Session {
            process: started,
            hub: hub.clone(),
            pumps,
        })
    }

    /// The host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The container's address on the default bridge.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.process.address()
    }

    /// Waits for the container to exit and for its output to be drained into the log.
    pub fn wait(mut self) -> Result<(Started, Exit), EngineError> {
        let exit = self.process.wait();
        self.drain();
        Ok((self.process, exit?))
    }
}

fn open_log(rec: &ContainerRecord) -> Result<Option<LogWriter>, EngineError> {
    if rec.host_config.log_config.kind == "none" || rec.log_path.is_empty() {
        return Ok(None);
    }
    let config = LogConfig::from_opts(
        rec.host_config
            .log_config
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(EngineError::Invalid)?;
    LogWriter::open(Path::new(&rec.log_path), config)
        .map(Some)
        .map_err(|e| host(&format!("open the log {}", rec.log_path), e))
}

/// Where a container's output goes: its log and the attached clients.
pub struct Hub {
    state: Mutex<HubState>,
    stdin: Mutex<Option<File>>,
    console: Mutex<Option<OwnedFd>>,
}

#[derive(Default)]
struct HubState {
    log: Option<LogWriter>,
    sinks: Vec<Sink>,
}

/// One receiver of output.
pub enum Sink {
    /// An attach client (framed).
    Client {
        /// Its socket.
        stream: UnixStream,
        /// What it asked for.
        request: AttachRequest,
    },
    /// A foreground `run`'s own stdout or stderr (raw bytes of one stream).
    Local {
        /// The stream it takes.
        stream: Stream,
        /// Where to.
        out: Box<dyn Write + Send>,
    },
}

impl Hub {
    /// A hub with no log and nobody attached yet.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(HubState::default()),
            stdin: Mutex::new(None),
            console: Mutex::new(None),
        })
    }

    fn clients(&self) -> usize {
        let state = self.state.lock().expect("lock");
        state
            .sinks
            .iter()
            .filter(|s| matches!(s, Sink::Client { .. }))
            .count()
    }

    /// Adds a receiver of output.
    pub fn add(&self, sink: Sink) {
        self.state.lock().expect("lock").sinks.push(sink);
    }

    fn output(&self, stream: Stream, bytes: &[u8]) {
        let mut state = self.state.lock().expect("lock");
        let now = jiff::Timestamp::now();
        if let Some(log) = &mut state.log
            && let Err(e) = log.write(stream, bytes, now)
        {
            tracing::warn!("writing the container's log: {e}");
        }
        state.sinks.retain_mut(|sink| match sink {
            Sink::Client {
                stream: socket,
                request,
            } => {
                let wanted = match stream {
                    Stream::Stdout => request.stdout,
                    Stream::Stderr => request.stderr,
                };
                if !wanted {
                    return true;
                }
                let kind = match stream {
                    Stream::Stdout => FRAME_STDOUT,
                    Stream::Stderr => FRAME_STDERR,
                };
                write_frame(socket, kind, bytes).is_ok()
            }
            Sink::Local { stream: s, out } => {
                if *s != stream {
                    return true;
                }
                let _ = out.write_all(bytes).and_then(|()| out.flush());
                true
            }
        });
    }

    fn eof(&self, stream: Stream) {
        let mut state = self.state.lock().expect("lock");
        if let Some(log) = &mut state.log {
            let _ = log.flush_partial(stream, jiff::Timestamp::now());
        }
    }

    /// Tells attached clients how the container ended and hangs up on them.
    pub fn end(&self, exit_code: i32) {
        let mut state = self.state.lock().expect("lock");
        let frame = serde_json::to_vec(&ExitFrame { exit_code }).unwrap_or_default();
        for sink in state.sinks.drain(..) {
            if let Sink::Client { mut stream, .. } = sink {
                let _ = write_frame(&mut stream, FRAME_EXIT, &frame);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        state.log = None;
    }

    /// Feeds what a client sends to the process's stdin until the client's input ends (then
    /// closes the stdin with `close_after`: Docker's `StdinOnce`, and every exec).
    pub fn feed_stdin(&self, mut from: impl Read, close_after: bool) {
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.write_stdin(&buf[..n]).is_err() {
                break;
            }
        }
        if close_after {
            self.close_stdin();
        }
    }

    /// Writes to the container's stdin (a pipe, or its pty).
    pub fn write_stdin(&self, bytes: &[u8]) -> io::Result<()> {
        match self.stdin.lock().expect("lock").as_mut() {
            Some(w) => w.write_all(bytes),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Closes the container's stdin pipe: the container reads end of file.
    pub fn close_stdin(&self) {
        *self.stdin.lock().expect("lock") = None;
    }

    /// Sets the window size of the container's pty.
    pub fn resize(&self, rows: u16, cols: u16) {
        if let Some(master) = self.console.lock().expect("lock").as_ref() {
            let _ = console::set_window_size(master, rows, cols);
        }
    }
}

fn pump(mut from: File, stream: Stream, hub: &Hub) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            // A pty master reads EIO once the container's side is closed.
            Ok(0) | Err(_) => break,
            Ok(n) => hub.output(stream, &buf[..n]),
        }
    }
    hub.eof(stream);
}

/// Writes one frame of the attach protocol.
pub fn write_frame(to: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut header = [0u8; 8];
    header[0] = kind;
    header[4..].copy_from_slice(&len.to_be_bytes());
    to.write_all(&header)?;
    to.write_all(payload)?;
    to.flush()
}

/// Reads one frame; `None` at end of stream.
pub fn read_frame(from: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 8];
    match from.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header[4..].try_into().expect("4 bytes")) as usize;
    let mut payload = vec![0u8; len];
    from.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// The attach socket's listener, served by a thread for the monitor's life.
struct AttachServer {
    path: PathBuf,
}

impl AttachServer {
    fn start(dir: &Path, hub: Arc<Hub>) -> Result<AttachServer, EngineError> {
        let path = dir.join(ATTACH_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = bind_short(&path).map_err(|e| host("listen on the attach socket", e))?;
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let hub = hub.clone();
                thread::spawn(move || serve_client(conn, &hub));
            }
        });
        Ok(AttachServer { path })
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(conn: UnixStream, hub: &Arc<Hub>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(request) = serde_json::from_str::<AttachRequest>(&line) else {
        return;
    };
    if let Some((rows, cols)) = request.resize {
        hub.resize(rows, cols);
        return;
    }
    let wants_stdin = request.stdin;
    let close_stdin = request.close_stdin;
    hub.add(Sink::Client {
        stream: conn,
        request,
    });
    if wants_stdin {
        // Whatever the reader buffered past the request line is input too.
        let buffered = reader.buffer().to_vec();
        if !buffered.is_empty()
            && let Some(w) = hub.stdin.lock().expect("lock").as_mut()
        {
            let _ = w.write_all(&buffered);
        }
        hub.feed_stdin(reader.into_inner(), close_stdin);
    }
}

/// Unix socket paths are limited to 108 bytes; a deep state root would not fit, so the
/// socket is bound and reached through the directory's descriptor.
fn bind_short(path: &Path) -> io::Result<UnixListener> {
    with_short_path(path, |p| UnixListener::bind(p))
}

/// Connects to a monitor's attach socket (see [`bind_short`]).
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    with_short_path(path, |p| UnixStream::connect(p))
}

/// Connects to the monitor of the container in `container_dir` and sends `request`: an
/// attach (its frames then come on the stream) or a resize.
pub fn attach(container_dir: &Path, request: &AttachRequest) -> io::Result<UnixStream> {
    let mut stream = connect(&container_dir.join(ATTACH_SOCKET))?;
    let line = serde_json::to_string(request).map_err(io::Error::other)?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    Ok(stream)
}

fn with_short_path<T>(path: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default();
    let dir_fd = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd())).join(name);
    f(&short)
}
