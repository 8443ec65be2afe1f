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
    /// Where its json-file log is.
    #[serde(default)]
    pub log_path: String,
    /// How often its restart policy restarted it.
    #[serde(default)]
    pub restart_count: i64,
    /// `stop` or `kill` ended it: no restart policy restarts it (Docker keeps this out of
    /// `inspect`; the CLI drops it there too).
    #[serde(default)]
    pub has_been_manually_stopped: bool,
    /// Volumes and bind mounts.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// Its networks and published ports.
    #[serde(default)]
    pub network_settings: NetworkSettings,
}

impl ContainerRecord {
    /// Its command as one line, `Path` and `Args` joined by spaces, each argument with a
    /// space in single quotes, unescaped (Docker's `Command` of `ps` and
    /// `GET /containers/json`: `sh -c 'echo a; sleep 9'`).
    pub fn command_line(&self) -> String {
        let mut line = self.path.clone();
        for arg in &self.args {
            line.push(' ');
            if arg.contains(' ') {
                line.push('\'');
                line.push_str(arg);
                line.push('\'');
            } else {
                line.push_str(arg);
            }
        }
        line
    }
}

/// Docker's entry of `Mounts`: a volume or bind mount.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Where it comes from on the host.
    pub source: String,
    /// Where it is in the container.
    pub destination: String,
    /// A volume's driver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The mode as given (`ro`, `z`, ...).
    pub mode: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
    /// Mount propagation (`rprivate`).
    pub propagation: String,
}

/// Docker's `NetworkSettings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// The network namespace's path while it runs.
    #[serde(default)]
    pub sandbox_key: String,
    /// Published ports: `80/tcp` to its host bindings (`null` when not published).
    #[serde(default)]
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// The container's address on the default bridge.
    #[serde(default, rename = "IPAddress")]
    pub ip_address: String,
    /// The default bridge's gateway.
    #[serde(default)]
    pub gateway: String,
    /// Its MAC address on the default bridge.
    #[serde(default)]
    pub mac_address: String,
    /// Each network it is connected to.
    #[serde(default)]
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// One published port's host side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// The host address (`0.0.0.0`).
    pub host_ip: String,
    /// The host port.
    pub host_port: String,
}

/// The container's endpoint on one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// Other names it has on the network.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// The network's ID.
    #[serde(default, rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's ID.
    #[serde(default, rename = "EndpointID")]
    pub endpoint_id: String,
    /// The network's gateway.
    #[serde(default)]
    pub gateway: String,
    /// The container's address.
    #[serde(default, rename = "IPAddress")]
    pub ip_address: String,
    /// The address's prefix length.
    #[serde(default)]
    pub ip_prefix_len: u8,
    /// The container's MAC address.
    #[serde(default)]
    pub mac_address: String,
    /// DNS names it answers to on the network.
    #[serde(default, rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
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
    /// created, running, paused, restarting, exited, dead.
    pub status: String,
    /// Whether the process runs (also while paused).
    pub running: bool,
    /// Frozen by `pause`.
    #[serde(default)]
    pub paused: bool,
    /// Waiting for its restart policy to start it again.
    #[serde(default)]
    pub restarting: bool,
    /// Its state could not be recovered.
    #[serde(default)]
    pub dead: bool,
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
    /// Its health check's outcome, when it has one (written by the checker alone: see
    /// `Engine::set_state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
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
    /// The container's stdin closes when its attached client's input ends (Docker's
    /// `StdinOnce`: `run -i` without `-d`).
    #[serde(default)]
    pub stdin_once: bool,
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
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// Whether a client attaches to its stdin, stdout and stderr (`run` without `-d`).
    #[serde(default)]
    pub attach_stdin: bool,
    /// See `attach_stdin`.
    #[serde(default)]
    pub attach_stdout: bool,
    /// See `attach_stdin`.
    #[serde(default)]
    pub attach_stderr: bool,
    /// Ports the container listens on (`EXPOSE`, `--expose`, `-p`), as `80/tcp` keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// Its health check (`--health-cmd` over the image's `HEALTHCHECK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// Docker's `HostConfig`: what berth honours today. Fields left out read as their defaults
/// (the Engine API's clients send only some).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
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
    /// `--restart`.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// `--log-driver` (json-file only) and `--log-opt`.
    #[serde(default)]
    pub log_config: LogConfig,
    /// `-v` as given.
    #[serde(default)]
    pub binds: Vec<String>,
    /// `--volumes-from` as given.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `-p`: the container's port (`80/tcp`) to its host bindings (an empty host port is
    /// any free one).
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on a free host port.
    #[serde(default)]
    pub publish_all_ports: bool,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host` (`name:address`).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

/// Docker's `RestartPolicy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// `""` or `no`, `always`, `unless-stopped`, `on-failure`.
    pub name: String,
    /// For `on-failure:N`.
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Parses `--restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub fn parse(value: &str) -> Result<RestartPolicy, String> {
        let (name, count) = match value.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (value, None),
        };
        let maximum_retry_count = match (name, count) {
            ("on-failure", Some(n)) => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("invalid restart policy format: maximum retry count must be a positive integer: {n}"))?,
            ("no" | "always" | "unless-stopped", Some(_)) => {
                return Err(format!(
                    "invalid restart policy format: maximum retry count can only be used with 'on-failure': {value}"
                ));
            }
            ("" | "no" | "always" | "unless-stopped" | "on-failure", _) => 0,
            _ => return Err(format!("invalid restart policy format: unknown policy '{name}'")),
        };
        Ok(RestartPolicy {
            name: if name.is_empty() {
                "no".into()
            } else {
                name.to_string()
            },
            maximum_retry_count,
        })
    }

    /// Whether a container that ended with `exit_code` after `restart_count` restarts
    /// starts again (a container stopped by the user never does).
    pub fn restarts(&self, exit_code: i32, restart_count: i64, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                exit_code != 0
                    && (self.maximum_retry_count == 0 || restart_count < self.maximum_retry_count)
            }
            _ => false,
        }
    }
}

/// Docker's `LogConfig`: the driver and its options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    /// Always `json-file`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `--log-opt` pairs.
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            kind: "json-file".into(),
            config: BTreeMap::new(),
        }
    }
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
