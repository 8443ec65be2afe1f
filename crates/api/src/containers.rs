//! `/containers/...`: Docker's wire forms over the engine's containers.

use std::{collections::BTreeMap, io, sync::Arc, time::Duration};

use berth_engine::{
    ContainerRecord, CreateOptions, EngineError, HostConfig,
    lifecycle::{is_active, log_readable, parse_signal},
    logfile::{self, ReadOptions, Stream},
    monitor::{self, AttachRequest, FRAME_STDERR, FRAME_STDOUT},
    mounts,
    summary::{self, ListOptions},
};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiError,
    http::{
        Api, Body, Call, channel_body, json, json_line, no_content, stream_content_type, with_body,
    },
    networks::EndpointConfig,
    streams,
};

// ---------------------------------------------------------------- list / inspect

/// `GET /containers/json`.
pub async fn list(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(summary::CONTAINER_FILTERS)?;
    let opts = ListOptions {
        all: call.flag("all"),
        last: call
            .param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0),
        filters,
    };
    let with_size = call.flag("size");
    let rows = api
        .engine(move |engine| {
            let records = engine.list_containers(&opts)?;
            let now = jiff::Timestamp::now();
            let mut rows = Vec::new();
            for rec in &records {
                let mut row = summary_row(rec, now);
                if with_size {
                    let own = engine.container_size(&rec.id);
                    let image = engine.store().resolve(&rec.image).map_or(0, |i| i.size);
                    row["SizeRw"] = json!(own);
                    row["SizeRootFs"] = json!(image + own);
                }
                rows.push(row);
            }
            Ok(rows)
        })
        .await?;
    json(StatusCode::OK, &rows)
}

/// One container as `GET /containers/json` lists it.
pub(crate) fn summary_row(rec: &ContainerRecord, now: jiff::Timestamp) -> Value {
    let mut ports = Vec::new();
    for (port, bindings) in &rec.network_settings.ports {
        let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        let private: u16 = number.parse().unwrap_or(0);
        match bindings.as_deref() {
            Some(bindings) if !bindings.is_empty() => {
                for b in bindings {
                    ports.push(json!({
                        "IP": b.host_ip,
                        "PrivatePort": private,
                        "PublicPort": b.host_port.parse::<u16>().unwrap_or(0),
                        "Type": proto,
                    }));
                }
            }
            _ => ports.push(json!({ "PrivatePort": private, "Type": proto })),
        }
    }
    let created = rec
        .created
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_second());
    let network_mode = if rec.host_config.network_mode.is_empty() {
        "bridge"
    } else {
        rec.host_config.network_mode.as_str()
    };
    json!({
        "Id": rec.id,
        "Names": [format!("/{}", rec.name)],
        "Image": rec.config.image,
        "ImageID": rec.image,
        "Command": rec.command_line(),
        "Created": created,
        "Ports": ports,
        "Labels": rec.config.labels,
        "State": rec.state.status,
        "Status": summary::status_text(rec, now),
        "HostConfig": { "NetworkMode": network_mode },
        "NetworkSettings": { "Networks": rec.network_settings.networks },
        "Mounts": rec.mounts,
    })
}

/// `GET /containers/{id}/json?size=`.
pub async fn inspect(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let with_size = call.flag("size");
    let mut doc = api
        .engine(move |engine| {
            let mut doc = engine.inspect_container(&id)?;
            if with_size {
                let rec = engine.container(&id)?;
                let own = engine.container_size(&rec.id);
                let image = engine.store().resolve(&rec.image).map_or(0, |i| i.size);
                doc["SizeRw"] = json!(own);
                doc["SizeRootFs"] = json!(image + own);
            }
            Ok(doc)
        })
        .await?;
    if let Some(id) = doc["Id"].as_str() {
        let execs = api.execs.unfinished_of(id);
        if !execs.is_empty() {
            doc["ExecIDs"] = json!(execs);
        }
    }
    json(StatusCode::OK, &doc)
}

// ---------------------------------------------------------------- create

/// Docker's `StrSlice`: a list, or one string (a command line the daemon does not split).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    List(Vec<String>),
    One(String),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::List(v) => v,
            StrSlice::One(s) => vec![s],
        }
    }
}

/// The body of `POST /containers/create`: `Config` with `HostConfig` and
/// `NetworkingConfig` beside it. Clients send nulls and leave fields out, so every field
/// has a default and nulls are dropped before reading ([`Call::lenient_json`]).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    hostname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Vec<String>,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    image: String,
    volumes: BTreeMap<String, Value>,
    working_dir: String,
    labels: BTreeMap<String, String>,
    stop_signal: String,
    stop_timeout: Option<i64>,
    exposed_ports: BTreeMap<String, Value>,
    healthcheck: Option<berth_engine::health::HealthConfig>,
    host_config: Value,
    networking_config: NetworkingConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfig {
    endpoints_config: BTreeMap<String, EndpointConfig>,
}

/// One of `HostConfig.Mounts`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountSpec {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
    bind_options: BTreeMap<String, Value>,
    volume_options: VolumeOptions,
    tmpfs_options: TmpfsOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeOptions {
    no_copy: bool,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TmpfsOptions {
    size_bytes: i64,
    mode: u32,
}

impl MountSpec {
    /// Its `--mount` keys and values, for the one mount parser the CLI uses too.
    fn fields(&self) -> Vec<(String, Option<String>)> {
        let field = |k: &str, v: String| (k.to_string(), Some(v));
        let mut fields = vec![
            field("type", self.kind.clone()),
            field("target", self.target.clone()),
        ];
        if !self.source.is_empty() {
            fields.push(field("source", self.source.clone()));
        }
        if self.read_only {
            fields.push(("readonly".into(), None));
        }
        if let Some(Value::String(p)) = self.bind_options.get("Propagation")
            && !p.is_empty()
        {
            fields.push(field("bind-propagation", p.clone()));
        }
        if self.volume_options.no_copy {
            fields.push(("volume-nocopy".into(), None));
        }
        for (k, v) in &self.volume_options.labels {
            fields.push(field("volume-label", format!("{k}={v}")));
        }
        if self.tmpfs_options.size_bytes > 0 {
            fields.push(field(
                "tmpfs-size",
                self.tmpfs_options.size_bytes.to_string(),
            ));
        }
        if self.tmpfs_options.mode != 0 {
            fields.push(field(
                "tmpfs-mode",
                format!("{:o}", self.tmpfs_options.mode),
            ));
        }
        fields
    }
}

/// A create's options, and the networks to connect the container to once it exists (with
/// their aliases).
type CreateRequest = (CreateOptions, Vec<(String, Vec<String>)>);

pub(crate) fn create_options(body: Value, name: Option<&str>) -> Result<CreateRequest, ApiError> {
    let bad =
        |e: serde_json::Error| ApiError::bad_request(format!("invalid container config: {e}"));
    let body: CreateBody = serde_json::from_value(body).map_err(bad)?;
    if body.image.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    refuse_unsupported(&body.host_config)?;
    let mount_specs: Vec<MountSpec> = match body.host_config.get("Mounts") {
        Some(m) => serde_json::from_value(m.clone()).map_err(bad)?,
        None => Vec::new(),
    };
    let mut host: HostConfig = if body.host_config.is_object() {
        serde_json::from_value(body.host_config.clone()).map_err(bad)?
    } else {
        HostConfig::default()
    };
    // Docker's clients say "default" for the daemon's default network.
    if host.network_mode == "default" {
        host.network_mode = String::new();
    }
    if host.log_config.kind.is_empty() {
        host.log_config.kind = "json-file".into();
    }
    host.port_bindings = std::mem::take(&mut host.port_bindings)
        .into_iter()
        .map(|(port, b)| {
            let port = if port.contains('/') {
                port
            } else {
                format!("{port}/tcp")
            };
            (port, b)
        })
        .collect();
    let invalid = ApiError::bad_request;
    let mut requests = Vec::new();
    for bind in &host.binds {
        requests.push(mounts::parse_volume_flag(bind).map_err(invalid)?);
    }
    for spec in &mount_specs {
        let shown = format!("{} mount on {}", spec.kind, spec.target);
        requests.push(mounts::mount_from_fields(spec.fields(), &shown).map_err(invalid)?);
    }
    // `-v /data` arrives as a `Volumes` key: an anonymous volume, unless a bind or mount
    // already has that target.
    for target in body.volumes.keys() {
        let request = mounts::parse_volume_flag(target).map_err(invalid)?;
        if !requests.iter().any(|r| r.target == request.target) {
            requests.push(request);
        }
    }
    // The network mode's endpoint gives the aliases; every other one is a network to join
    // after the create (the docker CLI sends all of `--network a --network b` here since
    // API 1.44, and compose too).
    let primary = match host.network_mode.as_str() {
        "" | "default" => "bridge",
        mode => mode,
    };
    let mut network_aliases = Vec::new();
    let mut more_networks = Vec::new();
    for (network, endpoint) in body.networking_config.endpoints_config {
        endpoint.check(&network)?;
        if network == primary || (primary == "bridge" && network == "default") {
            network_aliases = endpoint.aliases;
        } else {
            more_networks.push((network, endpoint.aliases));
        }
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok((
        CreateOptions {
            image: body.image,
            name: name
                .map(|n| n.trim_start_matches('/').to_string())
                .filter(|n| !n.is_empty()),
            cmd: body.cmd.map(StrSlice::into_vec).unwrap_or_default(),
            entrypoint: body.entrypoint.map(StrSlice::into_vec),
            env: body.env,
            workdir: some(body.working_dir),
            user: some(body.user),
            hostname: some(body.hostname),
            tty: body.tty,
            interactive: body.open_stdin,
            stdin_once: body.stdin_once,
            labels: body.labels.into_iter().collect(),
            stop_signal: some(body.stop_signal),
            stop_timeout: body.stop_timeout,
            attach: body.attach_stdin || body.attach_stdout || body.attach_stderr,
            mounts: requests,
            volumes_from: host.volumes_from.clone(),
            expose: body.exposed_ports.into_keys().collect(),
            network_aliases,
            healthcheck: body.healthcheck,
            host,
        },
        more_networks,
    ))
}

/// `HostConfig` fields berth does not act on yet, with the values that mean "not asked"
/// beside the zero values clients send for every field (`""`, `0`, `false`, `null`, `[]`,
/// `{}`). A create that asks for one of them is refused, never run without it.
const UNSUPPORTED_HOST_CONFIG: &[(&str, &[&str])] = &[
    ("Devices", &[]),
    ("DeviceRequests", &[]),
    ("DeviceCgroupRules", &[]),
    ("Sysctls", &[]),
    ("PidMode", &[]),
    ("IpcMode", &["private", "shareable"]),
    ("UTSMode", &[]),
    ("UsernsMode", &["host"]),
    ("Links", &[]),
    ("DnsSearch", &[]),
    ("DnsOptions", &[]),
    ("CpuQuota", &[]),
    ("CpuPeriod", &[]),
    ("CpuRealtimePeriod", &[]),
    ("CpuRealtimeRuntime", &[]),
    ("CpusetMems", &[]),
    ("BlkioWeight", &[]),
    ("BlkioWeightDevice", &[]),
    ("BlkioDeviceReadBps", &[]),
    ("BlkioDeviceWriteBps", &[]),
    ("BlkioDeviceReadIOps", &[]),
    ("BlkioDeviceWriteIOps", &[]),
    ("MemoryReservation", &[]),
    ("MemorySwappiness", &["-1"]),
    ("OomKillDisable", &[]),
    ("OomScoreAdj", &[]),
    ("CgroupParent", &[]),
    ("VolumeDriver", &["local"]),
    ("StorageOpt", &[]),
    ("Runtime", &["runc", "berth"]),
    ("Isolation", &["default"]),
];

/// Refuses a create that asks for what berth would otherwise silently leave out.
fn refuse_unsupported(host_config: &Value) -> Result<(), ApiError> {
    for (field, defaults) in UNSUPPORTED_HOST_CONFIG {
        let asked = match host_config.get(field) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => {
                n.as_f64() != Some(0.0) && !defaults.contains(&n.to_string().as_str())
            }
            Some(Value::String(s)) => !s.is_empty() && !defaults.contains(&s.as_str()),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        };
        if asked {
            return Err(ApiError::bad_request(format!(
                "HostConfig.{field} is not supported by berth yet (asked: {})",
                host_config[field]
            )));
        }
    }
    Ok(())
}

/// `POST /containers/create?name=`.
pub async fn create(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    let body: Value = call.lenient_json().await?;
    let (opts, more_networks) = create_options(body, call.param("name"))?;
    let rec = api
        .engine(move |engine| {
            let rec = engine.create(&opts)?;
            for (network, aliases) in &more_networks {
                if let Err(e) = engine.network_connect(network, &rec.id, aliases) {
                    // No half-made container: it goes with the error.
                    let _ = engine.remove(&rec.id, true);
                    return Err(e.into());
                }
            }
            Ok(rec)
        })
        .await?;
    json(
        StatusCode::CREATED,
        &json!({ "Id": rec.id, "Warnings": [] }),
    )
}

// ---------------------------------------------------------------- lifecycle

/// `POST /containers/{id}/{action}`.
pub async fn action(
    api: Arc<Api>,
    call: Call,
    id: String,
    action: &str,
) -> Result<Response<Body>, ApiError> {
    match action {
        "start" => start(&api, id).await,
        "stop" => stop(&api, &call, id, false).await,
        "restart" => stop(&api, &call, id, true).await,
        "kill" => kill(&api, &call, id).await,
        "wait" => wait(api, &call, id).await,
        "attach" => attach(api, call, id).await,
        "resize" => resize(&api, &call, id).await,
        "pause" => {
            api.engine(move |engine| Ok(engine.pause(&id).map(drop)?))
                .await?;
            no_content(StatusCode::NO_CONTENT)
        }
        "unpause" => {
            api.engine(move |engine| Ok(engine.unpause(&id).map(drop)?))
                .await?;
            no_content(StatusCode::NO_CONTENT)
        }
        "rename" => {
            let name = call.param("name").unwrap_or("").to_string();
            api.engine(move |engine| Ok(engine.rename(&id, &name).map(drop)?))
                .await?;
            no_content(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

fn spawn_error(e: monitor::SpawnError) -> ApiError {
    // 126/127: the command cannot run; the docker CLI reads the status from the message.
    let status = if e.status == 125 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, e.message)
}

/// `POST /containers/{id}/start`: under a monitor of its own, with the attach clients
/// parked for it connected before it runs.
async fn start(api: &Arc<Api>, id: String) -> Result<Response<Body>, ApiError> {
    let rec = api
        .engine({
            let id = id.clone();
            move |engine| Ok(engine.container(&id)?)
        })
        .await?;
    if is_active(&rec.state) {
        return no_content(StatusCode::NOT_MODIFIED);
    }
    spawn(api, rec.id).await?;
    no_content(StatusCode::NO_CONTENT)
}

/// Starts `id` under a new monitor, handing the monitor's connections to the parked attach
/// clients (or to an observer of its end).
async fn spawn(api: &Arc<Api>, id: String) -> Result<(), ApiError> {
    let mut parked = api.streams.take_parked(&id).into_iter();
    let first = parked.next();
    let request = first
        .as_ref()
        .map_or_else(AttachRequest::default, |p| p.request.clone());
    let spawned = api
        .engine({
            let id = id.clone();
            move |engine| {
                let dir = engine.container_dir(&id);
                monitor::spawn(engine, &id, Some(&request))
                    .map(|(_, conn)| (conn, dir))
                    .map_err(spawn_error)
            }
        })
        .await;
    let (conn, dir) = spawned?;
    if let Some(conn) = conn {
        match first {
            Some(p) => {
                if let Err(conn) = p.deliver.send(conn) {
                    api.streams.observe(conn, &id);
                }
            }
            None => api.streams.observe(conn, &id),
        }
    }
    for p in parked {
        if let Ok(conn) = monitor::attach(&dir, &p.request) {
            let _ = p.deliver.send(conn);
        }
    }
    Ok(())
}

/// `t` (seconds before SIGKILL) and `signal` of `stop` and `restart`.
pub(crate) fn stop_params(
    call: &Call,
) -> Result<(Option<i64>, Option<rustix::process::Signal>), ApiError> {
    let timeout = call
        .param("t")
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t}")))
        })
        .transpose()?;
    let signal = call
        .param("signal")
        .filter(|s| !s.is_empty())
        .map(|s| parse_signal(s).map_err(ApiError::bad_request))
        .transpose()?;
    Ok((timeout, signal))
}

/// `POST /containers/{id}/stop` and `/restart`.
async fn stop(
    api: &Arc<Api>,
    call: &Call,
    id: String,
    restart: bool,
) -> Result<Response<Body>, ApiError> {
    let (timeout, signal) = stop_params(call)?;
    let rec = api
        .engine(move |engine| {
            let rec = engine.container(&id)?;
            if !is_active(&rec.state) {
                return Ok((rec, false));
            }
            Ok((engine.stop(&rec.id, timeout, signal)?, true))
        })
        .await?;
    let (rec, stopped) = rec;
    if restart {
        spawn(api, rec.id).await?;
    } else if !stopped {
        return no_content(StatusCode::NOT_MODIFIED);
    }
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/kill?signal=`.
async fn kill(api: &Arc<Api>, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let signal = match call.param("signal").filter(|s| !s.is_empty()) {
        Some(s) => parse_signal(s).map_err(ApiError::bad_request)?,
        None => rustix::process::Signal::KILL,
    };
    api.engine(move |engine| Ok(engine.kill(&id, signal).map(drop)?))
        .await?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /containers/prune?filters=`.
pub async fn prune(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(berth_engine::CONTAINER_PRUNE_FILTERS)?;
    let (deleted, reclaimed) = api
        .engine(move |engine| Ok(engine.prune_containers(&filters)?))
        .await?;
    json(
        StatusCode::OK,
        &json!({
            "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
            "SpaceReclaimed": reclaimed,
        }),
    )
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let (force, volumes) = (call.flag("force"), call.flag("v"));
    api.engine(move |engine| Ok(engine.remove_with_volumes(&id, force, volumes)?))
        .await?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/resize?h=&w=`.
async fn resize(api: &Arc<Api>, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let (rows, cols) = call.console_size()?;
    api.engine(move |engine| {
        let rec = engine.container(&id)?;
        if !rec.state.running {
            return Err(EngineError::NotRunning(rec.id).into());
        }
        let request = AttachRequest {
            resize: Some((rows, cols)),
            ..Default::default()
        };
        monitor::attach(&engine.container_dir(&rec.id), &request)
            .map(drop)
            .map_err(|e| ApiError::internal(format!("resize: {e}")))
    })
    .await?;
    no_content(StatusCode::OK)
}

// ---------------------------------------------------------------- wait

/// How often `wait` reads the record of a container whose end it would not hear.
const POLL: Duration = Duration::from_millis(100);
/// ... and of one whose end it will hear.
const POLL_HEARD: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

/// `POST /containers/{id}/wait?condition=`: the head at once (Docker's clients start the
/// container after sending this), the code when the condition holds.
async fn wait(api: Arc<Api>, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let condition = match call.param("condition").unwrap_or("") {
        "" | "not-running" => Condition::NotRunning,
        "next-exit" => Condition::NextExit,
        "removed" => Condition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )));
        }
    };
    let rec = api.engine(move |engine| Ok(engine.container(&id)?)).await?;
    let baseline = api.streams.exits(&rec.id).0;
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        if let Some(code) = wait_for(&api, rec, condition, baseline, &tx).await {
            let _ = tx.send(json_line(&json!({ "StatusCode": code }))).await;
        }
    });
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// Polls the record (and hears the exits this server's streams see) until `condition`
/// holds; `None` when the client went away.
async fn wait_for(
    api: &Arc<Api>,
    first: ContainerRecord,
    condition: Condition,
    baseline: u64,
    client: &tokio::sync::mpsc::Sender<Bytes>,
) -> Option<i32> {
    let id = first.id.clone();
    if condition == Condition::NotRunning && !is_active(&first.state) {
        return Some(first.state.exit_code);
    }
    let mut exited: Option<i32> = None;
    let mut last_code = first.state.exit_code;
    // Whether the container ran when last looked at: only then can an exit still be on its way.
    let mut was_active = is_active(&first.state);
    let mut pause = POLL;
    loop {
        if client.is_closed() {
            return None;
        }
        // Registered before the checks, so an end recorded during them still wakes this.
        let woken = api.streams.exited.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (seen, code) = api.streams.exits(&id);
        if seen > baseline && exited.is_none() {
            exited = code;
        }
        if let Some(code) = exited
            && condition != Condition::Removed
        {
            return Some(code);
        }
        let looked = api
            .engine({
                let id = id.clone();
                move |engine| match engine.container(&id) {
                    Ok(rec) => Ok(Some((rec, engine.container_dir(&id)))),
                    Err(EngineError::NoSuchContainer(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .await;
        match looked {
            Ok(None) => {
                // Removed (`--rm`): the exit frame, sent before the removal, may still be on
                // its way through this server's observer or attach relay; give it a moment.
                // A container that had already stopped has no exit coming.
                let heard = match exited {
                    Some(code) => Some(code),
                    None if was_active => {
                        api.streams
                            .exit_after(&id, baseline, Duration::from_secs(1))
                            .await
                    }
                    None => None,
                };
                return Some(heard.unwrap_or(last_code));
            }
            Ok(Some((rec, dir))) => {
                last_code = rec.state.exit_code;
                was_active = is_active(&rec.state);
                // An end this server hears wakes it; the record is read now and then anyway.
                pause = if rec.state.running && api.streams.observe_running(&dir, &id) {
                    POLL_HEARD
                } else {
                    POLL
                };
                if exited.is_none()
                    && !is_active(&rec.state)
                    && rec.state.finished_at != first.state.finished_at
                {
                    // Ended unseen by this server (started by the CLI, say).
                    exited = Some(rec.state.exit_code);
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!("wait for {id}: {}", e.message);
            }
        }
        let _ = tokio::time::timeout(pause, woken).await;
    }
}

// ---------------------------------------------------------------- attach

/// `POST /containers/{id}/attach?stream=1&stdin=&stdout=&stderr=`, hijacked: Docker's
/// clients ask for `Upgrade: tcp` and get `101` and the raw connection. A container that
/// does not run yet is attached when it starts (`docker run` attaches, then starts).
async fn attach(api: Arc<Api>, mut call: Call, id: String) -> Result<Response<Body>, ApiError> {
    let (rec, dir) = api
        .engine(move |engine| {
            let rec = engine.container(&id)?;
            let dir = engine.container_dir(&rec.id);
            Ok((rec, dir))
        })
        .await?;
    let request = AttachRequest {
        stdin: call.flag("stdin"),
        stdout: call.flag("stdout"),
        stderr: call.flag("stderr"),
        close_stdin: rec.config.stdin_once,
        resize: None,
    };
    let on_upgrade = call
        .upgrade()
        .ok_or_else(|| ApiError::bad_request("attach needs a connection upgrade (Upgrade: tcp)"))?;
    let tty = rec.config.tty;
    // Parked before the answer goes out, so a start that follows it at once finds it.
    let parked = (!rec.state.running).then(|| api.streams.park(&rec.id, request.clone()));
    let stdin = request.stdin;
    let id = rec.id.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let conn = match parked {
            Some(receiver) => match receiver.await {
                Ok(conn) => conn,
                Err(_) => return,
            },
            None => {
                let connected =
                    tokio::task::spawn_blocking(move || monitor::attach(&dir, &request)).await;
                match connected {
                    Ok(Ok(conn)) => conn,
                    _ => return,
                }
            }
        };
        streams::relay(upgraded, conn, tty, stdin, |code| {
            api.streams.record_exit(&id, code)
        })
        .await;
    });
    Ok(crate::http::switching_protocols(tty))
}

// ---------------------------------------------------------------- logs

/// The logs query's `tail`, `since` and `until` (empty or `0`: no bound), read at `now`.
pub(crate) fn log_options(call: &Call, now: jiff::Timestamp) -> Result<ReadOptions, ApiError> {
    let bound = |key: &str| call.param(key).filter(|v| !v.is_empty() && *v != "0");
    ReadOptions::from_docker(
        call.param("tail").unwrap_or("all"),
        bound("since"),
        bound("until"),
        now,
    )
    .map_err(ApiError::bad_request)
}

/// `GET /containers/{id}/logs`: the json-file log as Docker's multiplexed stream (raw for
/// a TTY container), following it with `follow=1`.
pub async fn logs(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let (stdout, stderr) = (call.flag("stdout"), call.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let opts = log_options(call, jiff::Timestamp::now())?;
    let (follow, timestamps) = (call.flag("follow"), call.flag("timestamps"));
    let (tty, body) = api
        .stream(
            move |engine| {
                let rec = engine.container(&id)?;
                // Refused before the answer begins (`read_log` would say it in the stream).
                log_readable(&rec).map_err(ApiError::bad_request)?;
                Ok((rec.config.tty, rec))
            },
            move |engine, rec, tx| {
                let tty = rec.config.tty;
                let mut emit = |entry: &logfile::LogEntry| -> io::Result<()> {
                    let wanted = match entry.stream {
                        Stream::Stdout => stdout,
                        Stream::Stderr => stderr,
                    };
                    if !wanted {
                        return Ok(());
                    }
                    let line = entry.shown(timestamps);
                    let out = if tty {
                        line
                    } else {
                        let kind = match entry.stream {
                            Stream::Stdout => FRAME_STDOUT,
                            Stream::Stderr => FRAME_STDERR,
                        };
                        let mut framed = Vec::with_capacity(line.len() + 8);
                        monitor::write_frame(&mut framed, kind, &line)?;
                        framed
                    };
                    tx.blocking_send(Bytes::from(out))
                        .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
                };
                let gone = tx.clone();
                let result = engine.read_log(&rec, &opts, follow, &|| gone.is_closed(), &mut emit);
                if let Err(e) = result
                    && e.kind() != io::ErrorKind::BrokenPipe
                    && e.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!("logs of {}: {e}", rec.id);
                }
            },
        )
        .await?;
    Ok(with_body(StatusCode::OK, stream_content_type(tty), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_read_as_docker_clients_send_them() {
        let body = json!({
            "Image": "busybox",
            "Cmd": "echo hi",
            "Entrypoint": null,
            "Env": null,
            "Volumes": { "/data": {}, "/bound": {} },
            "HostConfig": {
                "NetworkMode": "default",
                "LogConfig": { "Type": "", "Config": null },
                "PortBindings": { "80": [{ "HostIp": "", "HostPort": "8080" }] },
                "Binds": ["/srv/a:/bound:ro"],
                "Mounts": [{
                    "Type": "bind",
                    "Source": "/srv/with,comma",
                    "Target": "/in,side",
                    "ReadOnly": true,
                }],
                "Init": null,
            },
            "NetworkingConfig": { "EndpointsConfig": { "default": { "Aliases": null } } },
        });
        let mut body = body;
        crate::http::strip_nulls(&mut body);
        let (opts, more_networks) = create_options(body, Some("/web")).unwrap();
        assert!(more_networks.is_empty());
        assert_eq!(opts.name.as_deref(), Some("web"));
        assert_eq!(opts.cmd, ["echo hi"]);
        assert_eq!(opts.entrypoint, None);
        assert_eq!(opts.host.network_mode, "");
        assert_eq!(opts.host.log_config.kind, "json-file");
        assert!(opts.host.port_bindings.contains_key("80/tcp"));
        let targets: Vec<&str> = opts.mounts.iter().map(|m| m.target.as_str()).collect();
        // The bind's target is not mounted again as an anonymous volume.
        assert_eq!(targets, ["/bound", "/in,side", "/data"]);
        assert_eq!(opts.mounts[1].source.as_deref(), Some("/srv/with,comma"));
        assert!(opts.mounts[1].read_only);
        let e = create_options(json!({ "Image": "" }), None).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn host_config_fields_berth_lacks_are_refused_unless_empty() {
        let zeroes = json!({
            "Image": "busybox",
            "HostConfig": {
                "Devices": [], "Sysctls": null, "IpcMode": "private", "PidMode": "",
                "MemorySwappiness": -1, "OomKillDisable": false, "CpuQuota": 0,
                "Runtime": "runc", "Links": null,
            }
        });
        assert!(create_options(zeroes, None).is_ok());
        for (field, value) in [
            ("Sysctls", json!({ "net.core.somaxconn": "1024" })),
            ("PidMode", json!("host")),
            ("Devices", json!([{ "PathOnHost": "/dev/fuse" }])),
            ("OomKillDisable", json!(true)),
            ("MemorySwappiness", json!(10)),
        ] {
            let body = json!({ "Image": "busybox", "HostConfig": { field: value } });
            let err = create_options(body, None).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(field), "{}", err.message);
        }
    }

    #[test]
    fn every_network_of_a_create_is_kept_or_refused() {
        let body = json!({
            "Image": "busybox",
            "HostConfig": { "NetworkMode": "front" },
            "NetworkingConfig": { "EndpointsConfig": {
                "front": { "Aliases": ["web"] },
                "back": { "Aliases": ["api"] },
            } },
        });
        let (opts, more) = create_options(body, None).unwrap();
        assert_eq!(opts.network_aliases, ["web"]);
        assert_eq!(more, [("back".to_string(), vec!["api".to_string()])]);
        let fixed = json!({
            "Image": "busybox",
            "HostConfig": { "NetworkMode": "front" },
            "NetworkingConfig": { "EndpointsConfig": {
                "front": { "IPAMConfig": { "IPv4Address": "10.1.0.5" } },
            } },
        });
        let e = create_options(fixed, None).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("--ip"), "{}", e.message);
    }
}
