//! Exec instances, as dockerd keeps them: `POST /containers/{id}/exec` records one,
//! `/exec/{id}/start` runs it (over the hijacked connection, or detached), `/exec/{id}/json`
//! reports it (the docker CLI reads the exit code there once the stream ends) and
//! `/exec/{id}/resize` sizes its pty. Instances live in the server's memory.
//!
//! The process is the engine's exec ([`Session::exec`]); its output goes through a [`Hub`]
//! to one client: a socket pair whose far end is relayed to the connection by the same code
//! that relays a container's attach ([`streams::relay`]).

use std::{
    collections::VecDeque,
    os::unix::net::UnixStream,
    sync::{Arc, Mutex},
};

use berth_engine::{
    exec::{ExecOptions, check_can_exec},
    monitor::{self, AttachRequest, FRAME_STDOUT, Hub, Session, Sink},
};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    ApiError,
    http::{Api, Body, Call, json, no_content},
    streams,
};

/// The code of an exec whose process could not be started (the client went away first).
const NOT_STARTED: i32 = 126;
/// The code of an exec whose end could not be read.
const END_UNKNOWN: i32 = 255;

/// Finished instances kept for `json` (the oldest go first beyond this).
const FINISHED_KEPT: usize = 1024;

/// The server's exec instances, oldest first.
#[derive(Default)]
pub struct Execs(Mutex<VecDeque<Arc<Instance>>>);

impl Execs {
    fn insert(&self, instance: Arc<Instance>) {
        let mut all = self.0.lock().expect("lock");
        all.push_back(instance);
        // Forget the oldest finished instances; running ones stay whatever their number.
        let mut excess = all
            .iter()
            .filter(|i| i.finished())
            .count()
            .saturating_sub(FINISHED_KEPT);
        all.retain(|i| {
            let forget = excess > 0 && i.finished();
            excess -= usize::from(forget);
            !forget
        });
    }

    /// The container's execs that have not ended (created or running): `ExecIDs` of its
    /// inspect document, as dockerd forgets an exec there once it exits.
    pub fn unfinished_of(&self, container_id: &str) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|i| i.container_id == container_id && !i.finished())
            .map(|i| i.id.clone())
            .collect()
    }

    fn get(&self, id: &str) -> Result<Arc<Instance>, ApiError> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }
}

/// One exec: what was asked, and how it went.
struct Instance {
    id: String,
    container_id: String,
    opts: ExecOptions,
    attach: AttachRequest,
    detach_keys: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    started: bool,
    pid: i32,
    exit_code: Option<i32>,
    /// The pty size to start with (from create, start, or a resize before the start).
    console_size: Option<(u16, u16)>,
    /// While it runs (and only then): where its output goes and its pty is sized.
    hub: Option<Arc<Hub>>,
}

impl Instance {
    fn finished(&self) -> bool {
        self.state.lock().expect("lock").exit_code.is_some()
    }

    /// Records the end, before the clients hear of it: the docker CLI asks for the code as
    /// soon as its stream ends.
    fn ended(&self, code: i32) {
        let mut state = self.state.lock().expect("lock");
        state.exit_code = Some(code);
        state.hub = None;
    }
}

/// `POST /containers/{id}/exec`'s body (Docker's `ExecConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    console_size: Option<[u16; 2]>,
    detach_keys: String,
    tty: bool,
    env: Vec<String>,
    cmd: Vec<String>,
    privileged: bool,
    user: String,
    working_dir: String,
}

/// `POST /exec/{id}/start`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct StartBody {
    detach: bool,
    console_size: Option<[u16; 2]>,
}

/// `POST /containers/{id}/exec`: records an exec in a running container.
pub async fn create(
    api: &Api,
    mut call: Call,
    container: String,
) -> Result<Response<Body>, ApiError> {
    let body: CreateBody = call.lenient_json().await?;
    let opts = ExecOptions {
        cmd: body.cmd,
        // A name without a value would be resolved in the client's environment; the
        // docker CLI sends values, others may not: such names are left out.
        env: body.env.into_iter().filter(|e| e.contains('=')).collect(),
        user: Some(body.user).filter(|u| !u.is_empty()),
        workdir: Some(body.working_dir).filter(|w| !w.is_empty()),
        tty: body.tty,
        privileged: body.privileged,
    };
    opts.validate()?;
    let rec = api
        .engine(move |engine| {
            let rec = engine.container(&container)?;
            check_can_exec(&rec)?;
            Ok(rec)
        })
        .await?;
    let id = berth_engine::new_id().map_err(ApiError::from)?;
    let instance = Arc::new(Instance {
        id: id.clone(),
        container_id: rec.id,
        opts,
        attach: AttachRequest {
            stdin: body.attach_stdin,
            stdout: body.attach_stdout,
            stderr: body.attach_stderr,
            // dockerd closes an exec's stdin when its client's input ends.
            close_stdin: true,
            resize: None,
        },
        detach_keys: body.detach_keys,
        state: Mutex::new(State {
            console_size: body.console_size.map(|[h, w]| (h, w)),
            ..State::default()
        }),
    });
    api.execs.insert(instance);
    json(StatusCode::CREATED, &serde_json::json!({ "Id": id }))
}

/// `POST /exec/{id}/start`: runs the instance, streaming over the hijacked connection, or
/// in the background with `Detach`.
pub async fn start(api: Arc<Api>, mut call: Call, id: String) -> Result<Response<Body>, ApiError> {
    let body: StartBody = call.lenient_json().await?;
    let instance = api.execs.get(&id)?;
    {
        let mut state = instance.state.lock().expect("lock");
        if state.exit_code.is_some() {
            return Err(ApiError::conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        if state.started {
            return Err(ApiError::conflict(format!(
                "Error: Exec command {id} is already running"
            )));
        }
        state.started = true;
        if let Some([h, w]) = body.console_size {
            state.console_size = Some((h, w));
        }
    }
    if body.detach {
        let root = api.root.clone();
        let started = instance.clone();
        tokio::task::spawn_blocking(move || run(&root, &started, None))
            .await
            .map_err(|e| ApiError::internal(format!("exec task: {e}")))??;
        return no_content(StatusCode::OK);
    }
    let Some(on_upgrade) = call.upgrade() else {
        instance.state.lock().expect("lock").started = false;
        return Err(ApiError::bad_request(
            "exec start needs a connection upgrade (Upgrade: tcp), or Detach",
        ));
    };
    let tty = instance.opts.tty;
    let stdin = instance.attach.stdin;
    let root = api.root.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            instance.ended(NOT_STARTED);
            return;
        };
        let (ours, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("exec {}: {e}", instance.id);
                instance.ended(NOT_STARTED);
                return;
            }
        };
        let started = instance.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = run(&root, &started, Some(theirs)) {
                tracing::debug!("exec {}: {}", started.id, e.message);
            }
        });
        streams::relay(upgraded, ours, tty, stdin, |_| {}).await;
    });
    Ok(crate::http::switching_protocols(tty))
}

/// Starts the process with its output going to `client` (a socket carrying the monitor's
/// frames), or nowhere; returns once it runs and leaves a thread to wait for its end. A
/// process that cannot start ends the instance with 126/127 and, with a client, tells it
/// why on its output, as dockerd does.
fn run(
    root: &std::path::Path,
    instance: &Arc<Instance>,
    client: Option<UnixStream>,
) -> Result<(), ApiError> {
    let hub = Hub::new();
    let mut input = None;
    if let Some(client) = &client {
        let stream = client
            .try_clone()
            .map_err(|e| ApiError::internal(format!("exec: {e}")))?;
        hub.add(Sink::Client {
            stream,
            request: instance.attach.clone(),
        });
        if instance.attach.stdin {
            input = Some(
                client
                    .try_clone()
                    .map_err(|e| ApiError::internal(format!("exec: {e}")))?,
            );
        }
    }
    let console_size = instance.state.lock().expect("lock").console_size;
    let session = berth_engine::Engine::open(root).and_then(|mut engine| {
        Session::exec(
            &mut engine,
            &instance.container_id,
            &instance.opts,
            &hub,
            None,
            instance.attach.stdin,
            console_size,
        )
    });
    let session = match session {
        Ok(session) => session,
        Err(e) => {
            let code = i32::from(monitor::exit_status_for(&e));
            instance.ended(code);
            if let Some(mut client) = client {
                let _ =
                    monitor::write_frame(&mut client, FRAME_STDOUT, format!("{e}\r\n").as_bytes());
                hub.end(code);
            }
            return Err(e.into());
        }
    };
    {
        let mut state = instance.state.lock().expect("lock");
        state.pid = session.pid();
        state.hub = Some(hub.clone());
    }
    if let Some(input) = input {
        let hub = hub.clone();
        std::thread::spawn(move || hub.feed_stdin(input, true));
    }
    let instance = instance.clone();
    std::thread::spawn(move || {
        let code = match session.wait() {
            Ok(exit) => exit.code,
            Err(e) => {
                tracing::warn!("exec {}: {e}", instance.id);
                END_UNKNOWN
            }
        };
        instance.ended(code);
        hub.end(code);
    });
    Ok(())
}

/// `POST /exec/{id}/resize`: sizes the pty (now, or at the start).
pub async fn resize(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let (rows, cols) = call.console_size()?;
    let instance = api.execs.get(&id)?;
    let mut state = instance.state.lock().expect("lock");
    match &state.hub {
        Some(hub) => hub.resize(rows, cols),
        None if !state.started => state.console_size = Some((rows, cols)),
        None => {
            return Err(ApiError::conflict(format!("exec {id} is not running")));
        }
    }
    no_content(StatusCode::OK)
}

/// Docker's `ExecInspect`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    running: bool,
    exit_code: Option<i32>,
    process_config: ProcessConfig<'a>,
    open_stdin: bool,
    open_stderr: bool,
    open_stdout: bool,
    can_remove: bool,
    #[serde(rename = "ContainerID")]
    container_id: &'a str,
    detach_keys: &'a str,
    pid: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessConfig<'a> {
    tty: bool,
    entrypoint: &'a str,
    arguments: &'a [String],
    privileged: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
}

/// `GET /exec/{id}/json`.
pub async fn inspect(api: &Api, id: String) -> Result<Response<Body>, ApiError> {
    let instance = api.execs.get(&id)?;
    let state = instance.state.lock().expect("lock");
    let opts = &instance.opts;
    let value = Inspect {
        id: &instance.id,
        running: state.hub.is_some(),
        exit_code: state.exit_code,
        process_config: ProcessConfig {
            tty: opts.tty,
            entrypoint: opts.cmd.first().map(String::as_str).unwrap_or(""),
            arguments: opts.cmd.get(1..).unwrap_or(&[]),
            privileged: opts.privileged,
            user: opts.user.as_deref().unwrap_or(""),
        },
        open_stdin: instance.attach.stdin,
        open_stderr: instance.attach.stderr,
        open_stdout: instance.attach.stdout,
        can_remove: false,
        container_id: &instance.container_id,
        detach_keys: &instance.detach_keys,
        pid: state.pid,
    };
    json(StatusCode::OK, &value)
}
