//! `/_ping`, `/version` and `/info`: what clients ask first, to negotiate the API version
//! and learn what the engine is; and `/system/df`.

use berth_engine::summary::HostFacts;
use hyper::{Response, StatusCode, header};
use serde_json::json;

use crate::{
    ApiError, MAX_VERSION, MIN_VERSION,
    containers::summary_row,
    http::{Api, Body, Call, full, json},
    images::image_row,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET|HEAD /_ping`: `OK`, with the version headers clients negotiate from.
pub fn ping() -> Result<Response<Body>, ApiError> {
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        // The classic builder: BuildKit's session protocol is not served.
        .header("Builder-Version", "1")
        .body(full("OK"))
        .expect("valid response"))
}

fn version_string(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /version`.
pub async fn version() -> Result<Response<Body>, ApiError> {
    // The kernel alone (the rest of `HostFacts` reads cgroups and /proc for `/info`).
    let kernel_version = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let api_version = version_string(MAX_VERSION);
    let min_version = version_string(MIN_VERSION);
    json(
        StatusCode::OK,
        &json!({
            "Platform": { "Name": "berth" },
            "Components": [{
                "Name": "Engine",
                "Version": VERSION,
                "Details": {
                    "ApiVersion": api_version,
                    "MinAPIVersion": min_version,
                    "Os": "linux",
                    "Arch": arch(),
                    "KernelVersion": kernel_version,
                    "Experimental": "false",
                },
            }],
            "Version": VERSION,
            "ApiVersion": api_version,
            "MinAPIVersion": min_version,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch(),
            "KernelVersion": kernel_version,
            "BuildTime": "",
        }),
    )
}

/// `GET /info`.
pub async fn info(api: &Api) -> Result<Response<Body>, ApiError> {
    let root = api.root.clone();
    let (containers, images, facts) = api
        .engine(|engine| {
            let containers = engine.containers()?;
            let images = engine.store().images()?.len();
            Ok((containers, images, HostFacts::read()))
        })
        .await?;
    let count = |status: &str| {
        containers
            .iter()
            .filter(|c| c.state.status == status)
            .count()
    };
    let running = containers.iter().filter(|c| c.state.running).count();
    let paused = count("paused");
    json(
        StatusCode::OK,
        &json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running - paused.min(running),
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "null"],
                "Authorization": null,
                "Log": ["json-file"],
            },
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": jiff::Timestamp::now().to_string(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": facts.cgroup_version,
            "NEventsListener": 0,
            "KernelVersion": facts.kernel_version,
            "OperatingSystem": facts.operating_system,
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": null,
            "NCPU": facts.cpus,
            "MemTotal": facts.mem_total,
            "DockerRootDir": root.display().to_string(),
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": facts.hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": VERSION,
            "Runtimes": { "berth": { "path": "berth" } },
            "DefaultRuntime": "berth",
            "Swarm": { "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null },
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "berth",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": null,
        }),
    )
}

/// `GET /system/df?type=`: the engine's disk usage (`Engine::disk_usage`, which `berth
/// system df` shows too) in Docker's shape; `type` (repeatable) picks sections.
pub async fn df(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let types = call.params("type");
    for t in &types {
        if !matches!(t.as_str(), "container" | "image" | "volume" | "build-cache") {
            return Err(ApiError::bad_request(format!("invalid type: {t}")));
        }
    }
    let wanted = |t: &str| types.is_empty() || types.iter().any(|w| w == t);
    let virtual_size = call.version < (1, 44);
    let usage = api.engine(|engine| Ok(engine.disk_usage()?)).await?;
    let now = jiff::Timestamp::now();
    let mut doc = serde_json::Map::new();
    if wanted("image") {
        doc.insert("LayersSize".into(), json!(usage.layers_size));
        let images: Vec<_> = usage
            .images
            .iter()
            .map(|i| {
                let mut row = image_row(&i.record, None, virtual_size);
                row["SharedSize"] = json!(i.shared_size);
                row["Containers"] = json!(i.containers);
                row
            })
            .collect();
        doc.insert("Images".into(), json!(images));
    }
    if wanted("container") {
        let containers: Vec<_> = usage
            .containers
            .iter()
            .map(|c| {
                let mut row = summary_row(&c.record, now);
                row["SizeRw"] = json!(c.size_rw);
                row["SizeRootFs"] = json!(c.size_root_fs);
                row
            })
            .collect();
        doc.insert("Containers".into(), json!(containers));
    }
    if wanted("volume") {
        let volumes: Vec<_> = usage
            .volumes
            .iter()
            .map(|v| {
                let mut row = json!(v.volume);
                row["UsageData"] = json!({ "Size": v.size, "RefCount": v.ref_count });
                row
            })
            .collect();
        doc.insert("Volumes".into(), json!(volumes));
    }
    if wanted("build-cache") {
        // The build cache is images held for reuse, counted with the images.
        doc.insert("BuildCache".into(), json!([]));
    }
    json(StatusCode::OK, &doc)
}
