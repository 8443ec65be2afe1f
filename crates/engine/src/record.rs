//! A container's record, shaped like Docker's `docker inspect` output so that `inspect` and
//! the Engine API can serve it as it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The first argument of the process.
    pub path: String,
    /// The rest.
    pub args: Vec<String>,
    /// Run state.
    pub state: ContainerState,
    /// The image ID (`sha256:...`).
    pub image: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// What the container runs.
    pub config: ContainerConfig,
    /// How it runs.
    pub host_config: HostConfig,
    /// Its layers, fixed at creation.
    #[serde(default)]
    pub graph_driver: GraphDriver,
}

/// Docker's `GraphDriver`: the overlay directories of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// Always `overlay2`, as Docker names it.
    pub name: String,
    /// The directories.
    pub data: GraphDriverData,
}

/// The overlay's directories.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriverData {
    /// The image's layers, top-most first, joined with `:`.
    pub lower_dir: String,
    /// The container's own layer.
    pub upper_dir: String,
    /// overlayfs' work directory.
    pub work_dir: String,
    /// Where the root filesystem is mounted (inside the container's mount namespace only).
    pub merged_dir: String,
}

/// Docker's `State`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// created, running, exited, dead (paused, restarting, removing in later issues).
    pub status: String,
    /// Whether the process runs.
    pub running: bool,
    /// Whether the OOM killer killed a process of it.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// The host pid of its init, 0 when not running.
    pub pid: i32,
    /// The exit code of the last run.
    pub exit_code: i32,
    /// Why it failed to start, if it did.
    pub error: String,
    /// RFC 3339, or Docker's zero time.
    pub started_at: String,
    /// RFC 3339, or Docker's zero time.
    pub finished_at: String,
}

/// Docker's zero time, for times that have not happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's `Config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The container's hostname.
    pub hostname: String,
    /// `-u` or the image's `USER`.
    pub user: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// Merged environment (image, then `-e`).
    pub env: Vec<String>,
    /// The command.
    pub cmd: Option<Vec<String>>,
    /// The entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The image as the user named it.
    pub image: String,
    /// The working directory.
    pub working_dir: String,
    /// Labels (image's, then `--label`).
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// Docker's `HostConfig`: what berth honours today.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `--network`: bridge (default), none, host.
    pub network_mode: String,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--group-add`.
    pub group_add: Vec<String>,
    /// `--init`.
    pub init: Option<bool>,
    /// `--tmpfs`: path to options.
    pub tmpfs: BTreeMap<String, String>,
    /// `--shm-size` in bytes.
    pub shm_size: i64,
    /// `--memory` in bytes, 0 for none.
    pub memory: i64,
    /// `--memory-swap` in bytes (memory + swap), -1 unlimited, 0 unset.
    pub memory_swap: i64,
    /// `--cpus` in billionths of a CPU.
    pub nano_cpus: i64,
    /// `--cpu-shares`.
    pub cpu_shares: i64,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: String,
    /// `--pids-limit`, None for unlimited.
    pub pids_limit: Option<i64>,
    /// `--ulimit name=soft:hard`.
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// e.g. `nofile`.
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}
